"""Staging directories of `pull`: made with a lock, removed whatever they hold, swept if stale.

A pull stages beside `dest` and removes its staging directory on the way out. Two things can
defeat that: a tree too deep for a recursive remove (`shutil.rmtree` recurses, so a hostile
or earlier tree thousands of levels deep ends in RecursionError), and a pull killed with
SIGKILL, whose `finally` never runs. So removal here is iterative and never raises, and each
live staging directory holds an exclusive `flock` on a file inside it: the kernel drops the
lock when its process dies, so the next pull can tell a dead pull's leftovers (lock free)
from a concurrent pull's work (lock held) without guessing from ages.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCK", "Staging", "remove_tree", "staging_prefix", "sweep_stale"]

log = logging.getLogger(__name__)

LOCK = ".conch-pull.lock"
"""File inside a staging directory whose flock marks the pull that owns it as alive."""
_UNLOCKED_GRACE_S = 60.0
"""A staging directory without its lock file yet is left alone this long (just created)."""


def staging_prefix(dest: Path) -> str:
    """Name prefix of `dest`'s staging directories (beside it, hidden)."""
    return f".{dest.name}.conch-pull-"


@dataclass
class Staging:
    """A locked staging directory; `close()` removes it and releases the lock."""

    path: Path
    _lock_fd: int

    @classmethod
    def create(cls, dest: Path) -> Staging:
        """Make and lock a fresh staging directory beside `dest`; OSError if it cannot."""
        path = Path(tempfile.mkdtemp(prefix=staging_prefix(dest), dir=dest.parent))
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            remove_tree(path)
            raise
        return cls(path, fd)

    def close(self) -> None:
        """Remove the directory, then drop the lock. Never raises."""
        remove_tree(self.path)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


def remove_tree(path: Path) -> bool:
    """Remove the directory tree at `path`, however deep; True if it is gone. Never raises."""
    try:
        shutil.rmtree(path)
        return True
    except FileNotFoundError:
        return True
    except (OSError, RecursionError) as exc:
        log.debug("rmtree %s failed (%s); removing it iteratively", path, type(exc).__name__)
    try:
        _remove_iteratively(path)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
    return not os.path.lexists(path)


def _remove_iteratively(top: Path) -> None:
    """Remove `top` depth-first with one open directory at a time, climbing back by `..`.

    No recursion and no long paths: only names relative to the open directory are used, and
    the names walked down are kept on a list, so any depth costs memory for names only.
    Links are never followed (O_NOFOLLOW), so `..` is always the directory we came from.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(top, flags)
    names: list[str] = []
    try:
        while True:
            below = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        below = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if below is not None:
                child = os.open(below, flags, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(below)
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(top)


def sweep_stale(dest: Path, *, now: float | None = None) -> list[Path]:
    """Remove staging directories of `dest` left by pulls that died; returns those removed.

    A directory whose lock another process holds belongs to a live pull and is kept.
    """
    removed: list[Path] = []
    now = time.time() if now is None else now
    try:
        candidates = [e for e in os.scandir(dest.parent) if e.name.startswith(staging_prefix(dest))]
    except OSError:
        return removed
    for entry in candidates:
        path = Path(entry.path)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        if _is_stale(path, now - info.st_mtime) and remove_tree(path):
            log.info("removed %s, left by an earlier pull that did not finish", path)
            removed.append(path)
    return removed


def _is_stale(path: Path, age: float) -> bool:
    """No live process holds the directory's lock (or it never got one and is not new)."""
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return age > _UNLOCKED_GRACE_S
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: a live pull
    finally:
        os.close(fd)  # closing drops our own lock again
    return True
