"""kopf, imported without the kubernetes client.

kopf imports the kubernetes client whenever it is installed (to recognise its model
classes, and to log in through it), and that client's package imports every model class:
about 55 MiB of the operator's memory for nothing, since the operator talks to the API
through `conch.rest`. The client is installed beside the operator (tests, the dev harness
and some CLI commands use it), so kopf is imported here while the optional clients are
hidden, and its default registry is a plain one: no login through a client library is
registered, the operator registers its own (`conch.handlers`).

Every operator module imports kopf from here: `from conch.kopf_alone import kopf`.
"""

from __future__ import annotations

import sys

_HIDDEN = ("kubernetes", "kubernetes_asyncio", "pykube")


def _import_alone() -> None:
    if "kopf" in sys.modules:
        return  # imported before (tests, the dev harness): keep its registry
    absent = [name for name in _HIDDEN if name not in sys.modules]
    for name in absent:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` -> ImportError
    try:
        import kopf as imported

        imported.set_default_registry(imported.OperatorRegistry())
    finally:
        for name in absent:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


_import_alone()

import kopf  # noqa: E402  (already imported above, with the clients hidden)
from kopf._core.engines.peering import Identity  # noqa: E402  (kopf.run's; not re-exported)

__all__ = ["Identity", "kopf"]
