"""One real node for every serving test of this package (package-scoped): the images helper's
runtime and CPU Triton images in it (the Triton image preloaded from the image store cache,
conch.dev.imagestore), one operator process for every namespace, and an artifact store on
the host's bridge address, the one host address pods reach. Every inference goes to a pod's
address on the bridge, checked before it is dialled.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conch.dev import imagebuild, netplan
from conch.dev.imagebuild import Built
from conch.dev.nodeconfig import NODE_LABEL, NODE_TAINT
from conch.dev.operator import OperatorProcess
from conch.dev.toolchain import Toolchain
from conch_runtime.package import PackageResult
from tests.integration.realnode import NodeCluster, node_cluster
from tests.integration.realnode_serving.helpers import DENIED, Store, mlp_package

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="package")
def images() -> dict[str, Built]:
    """The runtime and Triton images, built or found in the images helper's cache."""
    return {b.name: b for b in imagebuild.build(["runtime", "triton"])}


@pytest.fixture(scope="package")
def fp32_package(tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    """mlp 1.0.0 in fp32, packaged once for every test here (they only read it)."""
    return mlp_package(tmp_path_factory.mktemp("mlp-fp32") / "pkg", "1.0.0")


@pytest.fixture(scope="package")
def real(
    toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory, images: dict[str, Built]
) -> Iterator[NodeCluster]:
    """The node starts holding the Triton image (cached import); the runtime image, which
    changes with the source, is imported after."""
    preload = (Path(images["triton"].archive),)
    with node_cluster(toolchain, tmp_path_factory.mktemp("rn-serving"), preload) as nc:
        names = nc.cluster.import_images([Path(images["runtime"].archive)])
        assert images["runtime"].reference in names
        yield nc


@pytest.fixture(scope="package")
def operator(
    real: NodeCluster,
    images: dict[str, Built],
    toolchain: Toolchain,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator from this checkout, allowed the node's label, taint and Triton image."""
    real.cluster.install_crds(toolchain, ROOT / "crds")
    triton_repo = images["triton"].reference.rsplit(":", 1)[0]
    process = OperatorProcess(
        real.cluster.kubeconfig,
        tmp_path_factory.mktemp("rn-operator") / "operator.log",
        "--all-namespaces",
        f"--allowed-triton-image={triton_repo}",
        f"--allowed-toleration-key={NODE_TAINT['key']}",
        f"--allowed-node-selector-key={NODE_LABEL[0]}",
    ).start()
    yield process
    process.stop()


class _Store(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.lstrip("/").startswith(DENIED + "/"):
            self.send_error(403, "credentials refused")
            return
        super().do_GET()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="package")
def store(real: NodeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("rn-store")
    root.chmod(0o755)
    host = str(netplan.bridge_address(real.node.network).ip)

    def handler(*args: Any) -> _Store:
        return _Store(*args, directory=str(root))

    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Store(f"http://{host}:{server.server_address[1]}", root)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
