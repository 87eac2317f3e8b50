"""The `conch` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from conch.dev.demo import Answer

err = Console(stderr=True)


def _crds(args: argparse.Namespace) -> int:
    from conch.api import crd

    out = Path(args.output_dir)
    rendered = crd.files()
    if args.check:
        stale = [
            n
            for n, text in rendered.items()
            if not (out / n).exists() or (out / n).read_text() != text
        ]
        if stale:
            err.print(f"[red]stale CRDs in {out}: {', '.join(stale)}[/] (run `make crds`)")
            return 1
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out / name).write_text(text)
        err.print(f"wrote {out / name}")
    return 0


def _cluster_up(args: argparse.Namespace) -> int:
    from conch.dev import nodelock
    from conch.dev.cluster import STATE_FILE, Cluster, default_directory
    from conch.dev.toolchain import ensure_toolchain

    directory = Path(args.dir) if args.dir else default_directory(args.name)
    if (directory / STATE_FILE).exists():
        err.print(f"[red]a cluster is already up in {directory}[/]; `conch dev cluster down` first")
        return 1
    toolchain = ensure_toolchain()
    cluster = Cluster(directory)
    preload: tuple[Path, ...] = ()
    if args.real_node:  # the sandbox's Triton image (3 GB) comes with the node, cached
        from conch.dev import imagebuild

        with err.status("building (or finding) the sandbox's Triton image"):
            preload = tuple(Path(b.archive) for b in imagebuild.build(["triton"]))
    parts = "etcd, kube-apiserver, controller-manager, scheduler, kwok"
    lock = nodelock.acquire(lambda m: err.print(f"[yellow]{m}[/]")) if args.real_node else None
    with err.status(f"starting {parts}" + (", a real node" if args.real_node else "")):
        try:
            cluster.start(toolchain, real_node=args.real_node, preload=preload)
        except BaseException:  # start stopped what it started: the machine is free again
            if lock is not None:
                lock.close()
            raise
    if lock is not None:  # held until `down` has cleaned the host
        nodelock.hand_over(lock, directory / STATE_FILE, cluster.pids["kube-apiserver"])
    err.print(f"control plane up at {cluster.server}; binaries in {toolchain.bin_dir}")
    node = cluster.real_node
    if node is not None:
        err.print(f"real node up: bridge {node.bridge}, pod subnet {node.subnet}, in {node.root}")
    if args.operator:
        with err.status("installing CRDs and starting the operator"):
            metrics = cluster.start_operator(toolchain)
        err.print(f"operator running (log {directory / 'conch-operator.log'}, metrics {metrics})")
    print(cluster.kubeconfig)
    return 0


def _cluster_down(args: argparse.Namespace) -> int:
    from conch.dev.cluster import Cluster, default_directory

    directory = Path(args.dir) if args.dir else default_directory(args.name)
    if not (directory / "cluster.json").exists():
        err.print(f"no cluster in {directory}")
        return 0
    Cluster.load(directory).stop()
    err.print(f"stopped and removed {directory}")
    return 0


def _cluster_import(args: argparse.Namespace) -> int:
    from conch.dev.cluster import Cluster, default_directory

    directory = Path(args.dir) if args.dir else default_directory(args.name)
    names = Cluster.load(directory).import_images([Path(a) for a in args.archives])
    for name in names:
        print(name)
    return 0


def _answer_table(answer: Answer) -> None:
    from rich.table import Table

    from conch.dev import demo

    table = Table(
        title=f"{answer.model}: pod {answer.pod} ({answer.pod_ip}) vs the package's "
        f"validation/expected.npz, output {answer.output!r}"
    )
    for column in ("sample", "expected argmax (max)", "served argmax (max)", "max |diff|"):
        table.add_column(column)
    for row in demo.comparison_rows(answer.served, answer.expected):
        table.add_row(*row)
    Console().print(table)


def _demo(args: argparse.Namespace) -> int:
    from conch.dev import demo
    from conch.dev.cluster import Cluster, default_directory

    directory = Path(args.dir) if args.dir else default_directory(args.name)
    cluster = Cluster.load(directory)
    with err.status("serving the package from a pod on the real node"):
        answer = demo.run(cluster, Path(args.package), args.timeout)
    _answer_table(answer)
    print(f"apply -> first inference answered: {answer.apply_to_answer_s:.1f} s", flush=True)
    if not args.roll_out_to:
        return 0
    print(f"\nrolling out to {args.roll_out_to} under live traffic (pod addresses only):")
    rolled = demo.roll_out(cluster, Path(args.roll_out_to), lambda line: print(line, flush=True))
    _answer_table(rolled.answer)
    answered = ", ".join(f"{v} {n}" for v, n in sorted(rolled.ok.items()))
    print(
        f"rollout done in {rolled.seconds:.1f} s; requests answered: {answered}; "
        f"failed: {sum(rolled.failed.values())}"
    )
    return 0


def _toolchain(args: argparse.Namespace) -> int:
    from conch.dev import toolchain

    if args.action == "pin":
        toolchain.write_go_mod()
        err.print(f"regenerated {toolchain.WRAPPER_DIR / 'go.mod'}")
        return 0
    tc = toolchain.ensure_toolchain()
    if args.node:
        from conch.dev.node_toolchain import ensure_node_toolchain

        err.print(f"node binaries in {ensure_node_toolchain().bin_dir}")
    print(tc.bin_dir)
    return 0


def _images(args: argparse.Namespace) -> int:
    import subprocess

    from conch.dev import imagebuild, images

    if args.action == "lock":
        base, recipes = images.load()
        for argv in images.lock_commands(base, recipes.values(), uv=args.uv):
            subprocess.run(argv, check=True, cwd=images.REPO_ROOT)
        return 0
    try:
        built_images = imagebuild.build(args.names or None)
    except (ValueError, RuntimeError) as exc:  # unknown recipe, missing tool, failed step
        err.print(f"[red]{exc}[/]")
        return 1
    for built in built_images:
        mb = built.compressed_bytes / 1e6
        print(f"{built.name}\t{built.archive}\t{built.digest}\t{mb:.1f} MB compressed")
    return 0


def _operator_run(args: argparse.Namespace) -> int:
    from conch.operator_main import run

    return run(args)


def _operator_selftest(args: argparse.Namespace) -> int:
    from conch import selftest
    from conch.kubeclient import load_api_client

    try:
        print(selftest.run(load_api_client(pool_size=2), args.namespace, args.timeout))
    except selftest.SelftestFailed as failed:
        print(f"selftest failed: {failed}", file=sys.stderr)  # a pod log: never wrapped
        return 1
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from conch import catalog_cli

    return catalog_cli.run(args)


def _publish(args: argparse.Namespace) -> int:
    from conch import publish

    return publish.run(args)


def _rollout(args: argparse.Namespace) -> int:
    from conch import rollout_cli

    return rollout_cli.run(args)


def _keys(args: argparse.Namespace) -> int:
    from conch import keys_cli

    return keys_cli.run(args)


def _add_catalog_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`conch catalog`, `conch publish` (docs/catalog.md) and `conch rollout` (docs/rollouts.md)."""
    from conch.catalog_cli import add_arguments as catalog_arguments
    from conch.publish import add_arguments as publish_arguments

    cat = sub.add_parser(
        "catalog",
        help="list the shared models every team may serve, plus your namespace's own",
    )
    catalog_arguments(cat)
    cat.set_defaults(func=_catalog)
    pub = sub.add_parser(
        "publish",
        help="upload a package and apply its ModelVersion with usage terms (and --share it)",
    )
    publish_arguments(pub)
    pub.set_defaults(func=_publish)
    from conch.rollout_cli import add_arguments as rollout_arguments

    roll = sub.add_parser(
        "rollout", help="watch and steer a ModelService's rollout (status, pause, promote, ...)"
    )
    rollout_arguments(roll)
    roll.set_defaults(func=_rollout)
    from conch.keys_cli import add_arguments as keys_arguments

    keys = sub.add_parser(
        "keys", help="rotate or show the endpoint keys of a ModelService's consumers"
    )
    keys_arguments(keys)
    keys.set_defaults(func=_keys)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="conch", description=__doc__)
    sub = root.add_subparsers(required=True, metavar="COMMAND")

    crds = sub.add_parser("crds", help="generate crds/ from the API models")
    crds.add_argument("--output-dir", default="crds")
    crds.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    crds.set_defaults(func=_crds)

    _add_catalog_commands(sub)

    for name, text in RUNTIME_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)  # dispatched to conch_runtime in main()

    op = sub.add_parser("operator", help="the Kubernetes operator")
    op_sub = op.add_subparsers(required=True, metavar="ACTION")
    op_run = op_sub.add_parser("run", help="run the operator (in-cluster or with $KUBECONFIG)")
    from conch.operator_main import add_arguments

    add_arguments(op_run)
    op_run.set_defaults(func=_operator_run)
    op_test = op_sub.add_parser(
        "selftest",
        help="prove a running operator reconciles: a zero-replica ModelService, created, "
        "seen in status and deleted (the chart's `helm test`)",
    )
    op_test.add_argument("--namespace", "-n", required=True)
    op_test.add_argument("--timeout", type=float, default=120, metavar="SECONDS")
    op_test.set_defaults(func=_operator_selftest)

    dev = sub.add_parser("dev", help="local development: a real control plane on loopback")
    dev_sub = dev.add_subparsers(required=True, metavar="COMMAND")
    cluster = dev_sub.add_parser("cluster", help="start or stop the local control plane")
    cluster_sub = cluster.add_subparsers(required=True, metavar="ACTION")
    for action, func, text in (
        ("up", _cluster_up, "start it and print the kubeconfig path"),
        ("down", _cluster_down, "stop every process it started and remove its files"),
        ("import", _cluster_import, "import OCI image archives into its real node"),
    ):
        p = cluster_sub.add_parser(action, help=text)
        p.add_argument("--name", default="dev", help="cluster name (state under the cache)")
        p.add_argument("--dir", help="state directory (overrides --name)")
        if action == "up":
            p.add_argument(
                "--operator",
                action="store_true",
                help="also install the CRDs and run the operator from this checkout",
            )
            p.add_argument(
                "--real-node",
                action="store_true",
                help="also run a real node (kubelet + containerd) beside the kwok nodes, "
                "holding the sandbox's Triton image (built once, its import cached)",
            )
        if action == "import":
            p.add_argument("archives", nargs="+", help="OCI image archives (.tar)")
        p.set_defaults(func=func)
    demo = dev_sub.add_parser(
        "demo", help="serve a package from a pod on the real node and ask it once"
    )
    demo.add_argument("package", help="a `conch package` output directory")
    demo.add_argument("--name", default="dev", help="cluster name (state under the cache)")
    demo.add_argument("--dir", help="state directory (overrides --name)")
    demo.add_argument("--timeout", type=float, default=300, metavar="SECONDS")
    demo.add_argument(
        "--roll-out-to",
        metavar="PACKAGE",
        help="then roll the ModelService out to this package's version under live traffic",
    )
    demo.set_defaults(func=_demo)
    tools = dev_sub.add_parser("toolchain", help="build (once) the pinned binaries")
    tools.add_argument(
        "action",
        choices=["build", "pin"],
        nargs="?",
        default="build",
        help="build: print the bin directory; pin: regenerate go.mod",
    )
    tools.add_argument(
        "--node", action="store_true", help="also build the real node's binaries and pause image"
    )
    tools.set_defaults(func=_toolchain)
    imgs = dev_sub.add_parser("images", help="build the OCI images without Docker (images/)")
    imgs.add_argument(
        "action",
        choices=["build", "lock"],
        help="build: print each archive, digest and size; lock: rewrite the lock files (uv)",
    )
    imgs.add_argument("names", nargs="*", help="recipes to build (default: all)")
    imgs.add_argument("--uv", default="uv", help="the uv executable, for `lock`")
    imgs.set_defaults(func=_images)
    return root


RUNTIME_COMMANDS = {
    "pull": "fetch, verify and unpack a model artifact (the serving pods' init container)",
    "package": "compress, export and package a PyTorch model as a Triton repository",
    "validate": "serve a packaged repository on a real Triton and compare with the model",
    "push": "upload a package's artifact to S3 and point its ModelVersion at it",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in RUNTIME_COMMANDS:
        # The runtime has its own command line (it ships alone in the runtime image).
        from conch_runtime.__main__ import main as runtime_main

        return runtime_main(argv)
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
