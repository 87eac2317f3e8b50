"""Go-style duration strings (`500ms`, `30s`, `1h30m`) as `timedelta`.

The CRD validates the syntax with CEL, but the pydantic model keeps a plain `str`, so a
value can still reach the operator unchecked (a test fixture, an older CRD): it becomes
`InvalidSpec`, a condition the user can read, never a crash and never a silent default.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from conch.errors import InvalidSpec

_TOKEN: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> dt.timedelta:
    """`1h30m` -> 5400 s. Raises InvalidSpec for anything the CRD's rule would refuse."""
    position = 0
    seconds = 0.0
    for match in _TOKEN.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise InvalidSpec(f"{text!r} is not a duration such as 500ms, 30s, 5m or 1h")
    return dt.timedelta(seconds=seconds)
