"""`conch.ownership`: the JSON patch that hands a create's fields to Conch's apply."""

from __future__ import annotations

from typing import Any

import pytest

from conch import ownership

CONCH_UPDATE = {"manager": "conch", "operation": "Update", "fieldsV1": {"f:spec": {}}}
CONCH_APPLY = {"manager": "conch", "operation": "Apply", "fieldsV1": {"f:spec": {}}}
KCM_STATUS = {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"}
CONCH_STATUS = {"manager": "conch", "operation": "Update", "subresource": "status"}
OTHER_UPDATE = {"manager": "kubectl-edit", "operation": "Update"}


def guard(index: int) -> list[dict[str, Any]]:
    path = f"/metadata/managedFields/{index}"
    return [
        {"op": "test", "path": f"{path}/manager", "value": "conch"},
        {"op": "test", "path": f"{path}/operation", "value": "Update"},
    ]


@pytest.mark.parametrize(
    ("managed", "patch"),
    [
        ([], []),
        ([CONCH_APPLY, KCM_STATUS], []),  # already applied
        ([OTHER_UPDATE, KCM_STATUS], []),  # someone else's entries are never touched
        ([CONCH_STATUS], []),  # a subresource's entry holds no field of the object
        (
            [CONCH_UPDATE],
            [
                *guard(0),
                {"op": "replace", "path": "/metadata/managedFields/0/operation", "value": "Apply"},
            ],
        ),
        (
            [OTHER_UPDATE, CONCH_UPDATE, KCM_STATUS],
            [
                *guard(1),
                {"op": "replace", "path": "/metadata/managedFields/1/operation", "value": "Apply"},
            ],
        ),
        (  # two entries of one manager and operation are not allowed: the Update one goes
            [CONCH_APPLY, CONCH_UPDATE],
            [*guard(1), {"op": "remove", "path": "/metadata/managedFields/1"}],
        ),
    ],
)
def test_handover(managed: list[dict[str, Any]], patch: list[dict[str, Any]]) -> None:
    assert ownership.handover(managed) == patch
    assert ownership.pending({"metadata": {"managedFields": managed}}) is bool(patch)


def test_the_informer_keeps_only_a_mark() -> None:
    assert ownership.kept([CONCH_APPLY, KCM_STATUS, OTHER_UPDATE]) == []
    mark = ownership.kept([CONCH_UPDATE, KCM_STATUS])
    assert mark == [{"manager": "conch", "operation": "Update"}]
    assert ownership.pending({"metadata": {"managedFields": mark}})
    assert not ownership.pending({"metadata": {}})
