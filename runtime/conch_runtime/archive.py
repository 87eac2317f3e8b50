"""Unpack a verified tar archive without trusting it.

A model repository is plain directories and regular files, so that is all we accept: every
link, device, FIFO or other special member is refused, as are absolute names, `..`, names
with control characters, names deeper or longer than `MAX_DEPTH` / `MAX_NAME_BYTES`, names
that collide with an earlier member, and archives over the member-count or unpacked-size
limit. We write each file ourselves (never `extractall`), with `O_EXCL | O_NOFOLLOW`, so even
a check we forgot cannot make us write outside `dest`. Permissions are reduced to rwx for the
owner and r-x for the rest: no setuid, no world-writable files.

Messages name a member by its position and a short, escaped form of its name (`shown`):
never raw bytes of the archive, never a terminal escape.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from conch_runtime.errors import (
    DestinationError,
    HostileArchive,
    InvalidArchive,
    InvalidArgument,
    TooLarge,
)

__all__ = ["MAX_DEPTH", "MAX_NAME_BYTES", "UnpackLimits", "UnpackResult", "member_path", "unpack"]

_COPY_CHUNK = 1 << 20
MAX_DEPTH = 32
"""Most path components a member may have (a model repository is a few levels deep)."""
MAX_NAME_BYTES = 1024
"""Longest member name (UTF-8 bytes); each component also stays within NAME_MAX (255)."""
_MAX_COMPONENT_BYTES = 255
_SHOWN_CHARS = 60
_REFUSED_CATEGORIES = {"Cc", "Zl", "Zp"}  # C0/C1 controls, DEL, line/paragraph separators


@dataclass(frozen=True)
class UnpackLimits:
    """Bounds on what one archive may unpack to (a tar or gzip bomb stops here)."""

    max_bytes: int = 40 << 30
    max_members: int = 100_000
    why: str = ""
    """What set `max_bytes`, for the message (e.g. a compression-ratio cap)."""

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_members < 1:
            raise InvalidArgument(f"invalid unpack limits {self}")


@dataclass(frozen=True)
class UnpackResult:
    files: int
    directories: int
    bytes: int


def shown(name: str) -> str:
    """A member name fit for a one-line message: escaped (repr) and cut short."""
    if len(name) <= _SHOWN_CHARS:
        return repr(name)
    return f"{name[:_SHOWN_CHARS]!r}... ({len(name)} chars)"


def member_path(name: str) -> PurePosixPath | None:
    """The safe relative path of a member name; None for the archive root (`.`, `./`).

    Pure; raises HostileArchive for absolute names, `..` components, control characters,
    and names deeper than MAX_DEPTH or longer than MAX_NAME_BYTES.
    """
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in name):
        raise HostileArchive(f"member {shown(name)}: control character in name")
    if name.startswith("/"):
        raise HostileArchive(f"member {shown(name)}: absolute path")
    encoded = len(name.encode("utf-8", "surrogateescape"))
    if encoded > MAX_NAME_BYTES:
        raise HostileArchive(
            f"member {shown(name)}: name longer than {MAX_NAME_BYTES} bytes ({encoded})"
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise HostileArchive(f"member {shown(name)}: '..' component escapes the destination")
    if len(parts) > MAX_DEPTH:
        raise HostileArchive(
            f"member {shown(name)}: {len(parts)} levels deep, over the limit of {MAX_DEPTH}"
        )
    if any(len(p.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES for p in parts):
        raise HostileArchive(
            f"member {shown(name)}: a path component is longer than {_MAX_COMPONENT_BYTES} bytes"
        )
    return PurePosixPath(*parts) if parts else None


def _kind(member: tarfile.TarInfo) -> str:
    """Plain-words member type for messages."""
    if member.issym():
        return f"symlink to {shown(member.linkname)}"
    if member.islnk():
        return f"hardlink to {shown(member.linkname)}"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    return f"tar type {member.type!r}"


def unpack(archive: BinaryIO, dest: Path, limits: UnpackLimits) -> UnpackResult:
    """Unpack `archive` (tar, optionally gzip/bzip2/xz) into the existing empty dir `dest`.

    On error `dest` may hold a partial tree: the caller unpacks into a staging directory and
    removes it. Members are read in one forward pass (stream mode), so a compressed archive
    is decompressed once.
    """
    files = directories = total = count = 0
    seen: set[PurePosixPath] = set()
    try:
        with tarfile.open(fileobj=archive, mode="r|*") as tar:
            for member in tar:
                count += 1
                if count > limits.max_members:
                    raise TooLarge(f"archive has more than {limits.max_members} members")
                rel = member_path(member.name)
                if not (member.isreg() or member.isdir()):
                    raise HostileArchive(
                        f"member {shown(member.name)}: {_kind(member)} not allowed "
                        "(only regular files and directories)"
                    )
                if rel is None:
                    if member.isreg():
                        raise HostileArchive(
                            f"member {shown(member.name)}: a file named like the root"
                        )
                    continue
                if rel in seen:
                    raise HostileArchive(f"member {shown(member.name)}: duplicate entry")
                seen.add(rel)
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    _make_dirs(dest, rel, member.name)
                    directories += 1
                    continue
                total += member.size
                if total > limits.max_bytes:
                    raise TooLarge(
                        f"member {shown(member.name)}: unpacked size would exceed "
                        f"{limits.max_bytes} bytes{limits.why}"
                    )
                if rel.parent.parts:
                    _make_dirs(dest, rel.parent, member.name)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise InvalidArchive(f"member {shown(member.name)}: no data")
                _write_file(source, target, member.mode, member.size, member.name)
                files += 1
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        # Only reading is left unguarded here: writes raise DestinationError themselves.
        # tarfile's, zlib's and lzma's messages are fixed texts, never the archive's bytes
        raise InvalidArchive(f"not a readable tar archive: {shown(str(exc))}") from None
    return UnpackResult(files, directories, total)


def _make_dirs(dest: Path, rel: PurePosixPath, name: str) -> None:
    """mkdir each component under dest, refusing to walk through anything but a real dir."""
    current = dest
    for part in rel.parts:
        current = current / part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                raise HostileArchive(
                    f"member {shown(name)}: {shown(part)} is already a file"
                ) from None
        except OSError as exc:
            raise DestinationError(f"cannot create {current}: {exc.strerror}") from None


def _write_file(source: IO[bytes], target: Path, mode: int, size: int, name: str) -> None:
    """Copy one member's bytes to a file that must not exist yet (and is never a link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, 0o755 if mode & 0o111 else 0o644)
    except FileExistsError:
        raise HostileArchive(
            f"member {shown(name)}: path already taken by another member"
        ) from None
    except OSError as exc:
        raise DestinationError(f"cannot create {target}: {exc.strerror}") from None
    written = 0
    with os.fdopen(fd, "wb", buffering=0) as out:
        while chunk := source.read(_COPY_CHUNK):  # read errors: the archive's fault
            written += len(chunk)
            try:
                out.write(chunk)
            except OSError as exc:  # write errors: the destination's (ENOSPC, EIO)
                raise DestinationError(f"cannot write {target}: {exc.strerror}") from None
    if written != size:
        raise InvalidArchive(f"member {shown(name)}: truncated ({written} of {size} bytes)")
