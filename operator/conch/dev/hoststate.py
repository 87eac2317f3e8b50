"""What a real node can leave on the host, read from /proc, /sys and `ip`: processes,
mounts, links, kubepods cgroups, fixed paths and sysctls. Teardown uses it to find what to
remove; tests compare a snapshot taken before `up` with one taken after `down`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conch.dev.nodeconfig import FIXED_PATHS, SYSCTLS

WATCHED_SYSCTLS = (*SYSCTLS, "net/ipv4/ip_forward")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) for each line of /proc/PID/mountinfo."""
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mounts.append((_unescape(fields[4]), right.split()[0]))
    return mounts


def mounts() -> list[tuple[str, str]]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below `prefix`, deepest first (the order to unmount them)."""
    root = str(prefix).rstrip("/")
    found = [m for m, _ in mounts() if m == root or m.startswith(root + "/")]
    return sorted(set(found), key=len, reverse=True)


def cgroup_roots() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers, named ones and v2)."""
    return sorted({Path(m) for m, fstype in mounts() if fstype in ("cgroup", "cgroup2")})


def kubepods_cgroups() -> list[Path]:
    """kubelet's `kubepods` cgroup in each hierarchy where it exists."""
    return [root / "kubepods" for root in cgroup_roots() if (root / "kubepods").is_dir()]


def processes_mentioning(text: str) -> dict[int, str]:
    """Processes whose command line contains `text` (e.g. the node's state folder)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv:
            found[int(entry.name)] = argv.strip()
    return found


def links() -> list[dict[str, object]]:
    """`ip -j link`: every network interface in the host's namespace."""
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True)
    result: list[dict[str, object]] = json.loads(out.stdout or "[]")
    return result


def read_sysctl(key: str) -> str:
    return Path("/proc/sys", key).read_text().strip()


def write_sysctl(key: str, value: str) -> None:
    Path("/proc/sys", key).write_text(value + "\n")


@dataclass(frozen=True)
class HostSnapshot:
    """The parts of the host a real node touches."""

    sysctls: dict[str, str]
    fixed_paths: frozenset[str]
    link_names: frozenset[str]
    kubepods: frozenset[str]
    mount_points: frozenset[str]


def snapshot() -> HostSnapshot:
    return HostSnapshot(
        sysctls={key: read_sysctl(key) for key in WATCHED_SYSCTLS},
        fixed_paths=frozenset(p for p in FIXED_PATHS if os.path.lexists(p)),
        link_names=frozenset(str(link["ifname"]) for link in links()),
        kubepods=frozenset(str(p) for p in kubepods_cgroups()),
        mount_points=frozenset(m for m, _ in mounts()),
    )
