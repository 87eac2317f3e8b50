"""Fetch, verify and install one model-repository artifact: the serving pods' init container.

The order is the point: download to a staging directory beside `dest` (hashing and counting
as the bytes arrive), compare the sha256, and only then unpack, still inside staging, and
rename the finished tree onto `dest`. Triton therefore sees either no repository or a
complete, verified one, and any failure leaves neither `dest` nor staging behind (staging
left by a pull killed outright is swept by the next one: `conch_runtime.cleanup`). A `dest`
that already records the same digest (the `.conch-sha256` marker written inside it) is left
alone, so a restarted init container does no work.

`dest` must be a directory *inside* a volume (e.g. `/models/repo` on an emptyDir mounted at
`/models`), not the mount point itself: a mount point cannot be renamed onto.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from conch_runtime.archive import UnpackLimits, unpack
from conch_runtime.cleanup import Staging, sweep_stale
from conch_runtime.errors import (
    DestinationError,
    DigestMismatch,
    InvalidArgument,
    SourceUnavailable,
    TooLarge,
)
from conch_runtime.modeltree import check_repository
from conch_runtime.overrides import ServingOverrides
from conch_runtime.overrides import apply as apply_overrides
from conch_runtime.retry import RetryPolicy, with_retries
from conch_runtime.sources import SourceConfig, check_access, open_source
from conch_runtime.uri import Source, parse_uri

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_RATIO",
    "MARKER",
    "Progress",
    "PullOptions",
    "PullResult",
    "installed_digest",
    "pull",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 << 30
"""Largest artifact accepted by default (20 GiB); unpacked, twice that."""
DEFAULT_MAX_MEMBERS = 100_000
DEFAULT_MAX_RATIO = 100.0
"""Most an artifact may grow when unpacked, as a multiple of its size (a gzip bomb is ~1000)."""
DEFAULT_DEADLINE_S = 3600.0
"""Longest a download may take, all tries and waits included (the per-read timeout aside)."""
MARKER = ".conch-sha256"
"""File inside `dest` recording the digest of the artifact it was unpacked from."""

_DIGEST = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int | None], None]
"""Called with (bytes received so far, total bytes if the source said) as a download runs."""


@dataclass(frozen=True)
class PullResult:
    """What a pull did; `skipped` means `dest` already held this digest."""

    uri: str
    sha256: str
    dest: Path
    skipped: bool
    downloaded_bytes: int = 0
    attempts: int = 0
    files: int = 0
    unpacked_bytes: int = 0


def normalize_digest(sha256: str) -> str:
    """Lowercase hex, an optional `sha256:` prefix dropped; InvalidArgument otherwise."""
    digest = sha256.strip().lower().removeprefix("sha256:")
    if not _DIGEST.match(digest):
        raise InvalidArgument(f"sha256 must be 64 hex digits, got {sha256!r}")
    return digest


def installed_digest(dest: Path) -> str | None:
    """The digest recorded in `dest`'s marker, or None if `dest` is not a conch pull."""
    if dest.is_symlink() or not dest.is_dir():
        return None
    try:
        return (dest / MARKER).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class PullOptions:
    """What a pull may fetch and how: limits, where credentials come from, retries, and the
    serving settings written into each config.pbtxt."""

    max_bytes: int = DEFAULT_MAX_BYTES
    """Most bytes downloaded."""
    max_unpacked_bytes: int | None = None
    """Most bytes unpacked (default: twice max_bytes)."""
    max_members: int = DEFAULT_MAX_MEMBERS
    max_ratio: float | None = DEFAULT_MAX_RATIO
    """Most unpacked bytes per downloaded byte."""
    deadline: float | None = DEFAULT_DEADLINE_S
    """Seconds the whole pull may take, retries included."""
    config: SourceConfig | None = None
    """Endpoints and credentials (default: from the environment)."""
    retry: RetryPolicy | None = None
    overrides: ServingOverrides | None = None

    def check(self) -> None:
        """InvalidArgument for a limit no pull could meet."""
        if self.max_bytes < 0:
            raise InvalidArgument(f"max_bytes must be >= 0, got {self.max_bytes}")
        if self.deadline is not None and self.deadline <= 0:
            raise InvalidArgument(f"deadline must be > 0 seconds, got {self.deadline}")
        if self.max_ratio is not None and self.max_ratio < 1:
            raise InvalidArgument(f"max_ratio must be >= 1, got {self.max_ratio}")


def pull(
    uri: str,
    sha256: str,
    dest: Path,
    options: PullOptions | None = None,
    *,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PullResult:
    """Install the artifact at `uri`, whose sha256 must be `sha256`, as the directory `dest`.
    `sleep` and `clock` are the time a test may control.

    Raises only `conch_runtime.errors.PullError` subclasses.
    """
    options = options or PullOptions()
    digest = normalize_digest(sha256)
    options.check()
    max_bytes, max_ratio, overrides = options.max_bytes, options.max_ratio, options.overrides
    limits = UnpackLimits(
        max_bytes=2 * max_bytes
        if options.max_unpacked_bytes is None
        else options.max_unpacked_bytes,
        max_members=options.max_members,
    )
    source = parse_uri(uri)
    config = options.config or SourceConfig.from_env()
    check_access(source, uri, config)  # before touching dest or the network
    dest = Path(os.path.abspath(dest))
    sweep_stale(dest)
    if installed_digest(dest) == digest:
        log.info("%s already holds %s; nothing to do", dest, digest)
        return PullResult(uri, digest, dest, skipped=True)
    _check_replaceable(dest)

    missing_parents = [p for p in dest.parents if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Staging.create(dest)
    except OSError as exc:
        raise DestinationError(f"cannot create a staging directory beside {dest}: {exc}") from None
    staging = stage.path
    done = False
    try:
        artifact = staging / "artifact"
        timer = _Deadline(options.deadline, clock)
        downloaded, attempts = with_retries(
            lambda: _download(source, uri, config, artifact, digest, max_bytes, progress, timer),
            options.retry or RetryPolicy(),
            sleep=sleep,
            on_retry=lambda n, exc, wait: log.info("retry %d in %.1fs: %s", n, wait, exc),
            give_up_at=timer.at,
            clock=clock,
        )
        tree = staging / "tree"
        tree.mkdir(mode=0o755)
        with artifact.open("rb") as archive:
            unpacked = unpack(archive, tree, _ratio_capped(limits, downloaded, max_ratio))
        artifact.unlink()
        check_repository(tree)
        if overrides is not None:
            apply_overrides(tree, overrides)
        (tree / MARKER).write_text(digest + "\n")
        _install(tree, dest, digest, staging)
        done = True
    except OSError as exc:  # our own staging I/O; fetchers and unpack translate theirs
        raise DestinationError(f"{dest}: {exc}") from None
    finally:
        stage.close()  # never raises, however deep the tree
        if not done:
            for parent in missing_parents:  # innermost first
                with contextlib.suppress(OSError):
                    parent.rmdir()
    return PullResult(
        uri,
        digest,
        dest,
        skipped=False,
        downloaded_bytes=downloaded,
        attempts=attempts,
        files=unpacked.files,
        unpacked_bytes=unpacked.bytes,
    )


def _ratio_capped(limits: UnpackLimits, downloaded: int, max_ratio: float | None) -> UnpackLimits:
    """`limits` with the unpacked size also capped at `max_ratio` times the download."""
    if max_ratio is None or downloaded * max_ratio >= limits.max_bytes:
        return limits
    return replace(
        limits,
        max_bytes=int(downloaded * max_ratio),
        why=f" ({max_ratio:g} times the {downloaded}-byte artifact; see --max-ratio)",
    )


def _check_replaceable(dest: Path) -> None:
    """Refuse before downloading anything if `dest` holds something we must not replace."""
    if not os.path.lexists(dest):
        return
    if dest.is_symlink() or not dest.is_dir():
        raise DestinationError(f"{dest} exists and is not a directory")
    try:
        foreign = installed_digest(dest) is None and any(dest.iterdir())
    except OSError as exc:
        raise DestinationError(f"cannot list {dest}: {exc.strerror}") from None
    if foreign:
        raise DestinationError(
            f"{dest} is a non-empty directory not written by conch pull (no {MARKER}); "
            "refusing to replace it"
        )


class _Deadline:
    """When the download must be over, as a `clock()` time; `at` None means never."""

    def __init__(self, seconds: float | None, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self.at = None if seconds is None else clock() + seconds

    def check(self, uri: str, received: int) -> None:
        """SourceUnavailable once past the deadline: a server trickling bytes cannot hold us."""
        if self.at is not None and self.clock() > self.at:
            raise SourceUnavailable(
                f"{uri}: download did not finish within {self.seconds:g} s "
                f"({received} bytes received)"
            )


def _download(
    source: Source,
    uri: str,
    config: SourceConfig,
    artifact: Path,
    digest: str,
    max_bytes: int,
    progress: Progress | None,
    deadline: _Deadline,
) -> int:
    """One attempt: stream the whole artifact into `artifact`, hashing; return its size."""
    hasher = hashlib.sha256()
    received = 0
    deadline.check(uri, received)
    with open_source(source, uri, config) as body, artifact.open("wb") as out:
        deadline.check(uri, received)
        if body.length is not None and body.length > max_bytes:
            raise TooLarge(
                f"{uri}: the source announces a size over the limit of {max_bytes} bytes"
            )
        for chunk in body.chunks:
            received += len(chunk)
            if received > max_bytes:
                raise TooLarge(f"{uri}: more than {max_bytes} bytes, over the limit")
            hasher.update(chunk)
            out.write(chunk)
            deadline.check(uri, received)
            if progress is not None:
                progress(received, body.length)
        if body.length is not None and received != body.length:
            raise SourceUnavailable(f"{uri}: truncated: {received} of {body.length} bytes")
    if hasher.hexdigest() != digest:
        # Never the actual digest: with it, a pull would tell anyone the hash of any file
        # it can reach, an oracle for guessing contents.
        raise DigestMismatch(f"{uri}: the artifact does not match the expected sha256 {digest}")
    return received


def _install(tree: Path, dest: Path, digest: str, staging: Path) -> None:
    """Rename `tree` onto `dest`: atomic when `dest` is absent or an empty directory."""
    try:
        os.rename(tree, dest)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise DestinationError(f"cannot rename the unpacked tree onto {dest}: {exc}") from None
    current = installed_digest(dest)
    if current == digest:  # another pull of the same artifact finished first
        return
    if current is None:
        raise DestinationError(f"{dest} appeared while pulling and was not written by conch pull")
    # An older conch pull: swap it out. Triton is not running yet in an init container.
    os.rename(dest, staging / "previous")
    os.rename(tree, dest)
