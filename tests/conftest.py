"""How `make test` splits the suite over pytest-xdist workers (`--dist loadgroup`).

Each worker starts its own control plane (session fixtures are per worker), so a test file is
the unit of work: its module and package fixtures are set up once, on one worker. Every test
that brings up the real node goes to one group: there is one bridge and one node per machine
(tests/integration/realnode.py serialises them on a lock anyway), and the serving package
shares one node between its files. That group is the longest, so it comes first in
collection order and `make test` keeps that order (`--no-loadscope-reorder`).
"""

from __future__ import annotations

import pytest

REAL_NODE_GROUP = "real-node"
REAL_NODE_PATHS = (
    "tests/integration/realnode_serving/",
    "tests/integration/test_real_node.py",
    "tests/integration/test_real_node_half_started.py",
)


def xdist_group(nodeid: str) -> str:
    """The work unit of a test: the real-node group, else its file (xdist appends the name
    to the test's id, so it is kept short: `unit/test_api`)."""
    path = nodeid.split("::", 1)[0]
    if path.startswith(REAL_NODE_PATHS):
        return REAL_NODE_GROUP
    return path.removeprefix("tests/").removesuffix(".py")


@pytest.hookimpl(tryfirst=True)  # before xdist appends the group to each node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item.nodeid)))
