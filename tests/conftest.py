"""How `make test` splits the suite over pytest-xdist workers (`--dist loadfile`).

Each worker starts its own control plane (session fixtures are per worker), so a test file is
the unit of work: its module and package fixtures are set up once, on one worker. Every test
that brings up the real node is one unit: there is one bridge and one node per machine
(tests/integration/realnode.py serialises them on a lock anyway), and the serving package
shares one node between its files. That unit is the longest, so it comes first in
collection order and `make test` keeps that order (`--no-loadscope-reorder`).
"""

from __future__ import annotations

from typing import Any

import pytest

REAL_NODE_UNIT = "real-node"
REAL_NODE_PATHS = (
    "tests/integration/realnode_serving/",
    "tests/integration/test_real_node.py",
    "tests/integration/test_real_node_half_started.py",
)


def work_unit(nodeid: str) -> str:
    """The unit a test is scheduled in: the real-node unit, else its file."""
    path = nodeid.split("::", 1)[0]
    return REAL_NODE_UNIT if path.startswith(REAL_NODE_PATHS) else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the real-node tests in one unit (xdist's own hook for a
    scheduler of one's own; its `xdist_group` marks rename test ids, which pytest 9 ignores)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndTheRealNode(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FilesAndTheRealNode(config, log)
