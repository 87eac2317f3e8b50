"""Fields Conch created with a POST, handed over to its server-side apply.

A new service's Deployment is created with a POST, not an apply: a POST is create-only, so
it can go out together with the checks of the other objects without ever writing into an
object someone else holds (`plan.Plan.create`). But a POST records its fields under an
Update entry of the field manager, and an apply removes only fields that its own Apply
entry held: a field the create wrote and a later spec no longer implies would stay. So
before Conch first applies such an object, the entry is turned into Conch's Apply entry,
as kubectl's own client-side-to-server-side upgrade does (client-go's csaupgrade). Until
then the informer keeps a mark on the object (`pending`); most Deployments never change,
so most creates cost no second request.
"""

from __future__ import annotations

from typing import Any

from conch.builders.meta import FIELD_MANAGER, Manifest

Entry = dict[str, Any]
"""One metadata.managedFields entry."""


def _is_update(entry: Entry) -> bool:
    return (
        entry.get("manager") == FIELD_MANAGER
        and entry.get("operation") == "Update"
        and not entry.get("subresource")
    )


def kept(managed: list[Entry]) -> list[Entry]:
    """What the informer keeps of an object's managedFields: a mark while Conch's Update
    entry is there, else nothing."""
    return [{"manager": FIELD_MANAGER, "operation": "Update"} for e in managed if _is_update(e)]


def pending(obj: Manifest) -> bool:
    """Whether `obj` (as the informer keeps it, or as the API answered) still has fields
    under Conch's Update entry."""
    return any(_is_update(e) for e in obj["metadata"].get("managedFields") or [])


def handover(managed: list[Entry]) -> list[dict[str, Any]]:
    """A JSON patch that makes Conch's Update entry its Apply entry ([]: none to hand
    over). Its tests refuse the patch (422) if the entries moved since `managed` was read.
    Were an Apply entry there already (an apply came first), the Update entry is removed
    instead: the fields only it held then belong to no one, which no later apply is
    stopped by."""
    for index, entry in enumerate(managed):
        if _is_update(entry):
            path = f"/metadata/managedFields/{index}"
            guard = [
                {"op": "test", "path": f"{path}/manager", "value": FIELD_MANAGER},
                {"op": "test", "path": f"{path}/operation", "value": "Update"},
            ]
            applied = any(
                e.get("manager") == FIELD_MANAGER
                and e.get("operation") == "Apply"
                and not e.get("subresource")
                for e in managed
            )
            if applied:
                return [*guard, {"op": "remove", "path": path}]
            return [*guard, {"op": "replace", "path": f"{path}/operation", "value": "Apply"}]
    return []
