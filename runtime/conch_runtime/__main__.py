"""Command line of the runtime: ``pull`` (the init container), ``package`` and ``validate``.

    python -m conch_runtime pull --uri U --sha256 H --dest D
    python -m conch_runtime package MODEL --out DIR --name N --version V [--int8] ...
    python -m conch_runtime validate DIR [--atol A] [--rtol R] [--json]

``package`` and ``validate`` import torch only when they run, so ``pull`` starts fast.
Their failures print one line, ``conch package: <Reason>: <message>``, and exit with the
code of the error class (20-27, see `conch_runtime.tool_errors`); ``validate`` exits 1 when the
package runs but does not match its reference.

``pull``:

On success it prints one line to stdout and exits 0. On failure it prints exactly one line,
``conch pull: <Reason>: <message>``, to stderr and exits with the code of the error class,
so the operator can read a pod's termination state without parsing logs:

    0   success, or dest already held this digest
    1   PullFailed          unexpected pull failure
    2   (usage)             bad command line (argparse)
    3   InvalidArgument     malformed digest or limit
    4   UnsupportedSource   unknown scheme or malformed URI
    5   ArtifactNotFound    404, NoSuchKey, missing file or claim
    6   AccessDenied        401/403, missing or refused credentials
    7   SourceRejected      another permanent refusal by the source
    8   SourceUnavailable   still failing after the retries or past --deadline (transient)
    9   DigestMismatch      bytes do not match --sha256
    10  ArtifactTooLarge    over --max-bytes, or unpacks to too much
    11  HostileArchive      a member is a link, device, absolute or escapes dest
    12  InvalidArchive      not a readable tar archive
    13  DestinationError    cannot write --dest, or it holds foreign files
    14  CredentialsNotAllowed  credentials configured, host or bucket not allowed

Credentials: ``--credentials-dir`` is a mounted Secret, one file per key
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN`` and
``AWS_REGION`` for s3://; ``token``, a bearer token, for http(s)://). Without it the usual
environment variables apply (``AWS_*``, ``CONCH_HTTP_TOKEN``). Credentials go only where
``--credentials-host`` allows (repeatable: ``host``, ``host:port``, ``*.domain``; for s3://
the bucket name and the endpoint's host must both be listed); with credentials configured,
any other target is refused (exit 14) before a connection is made. A redirect to another
origin never carries the token. ``file://`` needs ``--allow-file`` (the sandbox and tests).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from conch_runtime.errors import PullError
from conch_runtime.overrides import ServingOverrides
from conch_runtime.pull import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_RATIO,
    Progress,
    PullOptions,
    pull,
)
from conch_runtime.pull_contract import COMMAND, Flag
from conch_runtime.sources import DEFAULT_PVC_ROOT, SourceConfig
from conch_runtime.tool_errors import ToolError
from conch_runtime.tools_cli import add_tool_commands, run_tool_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conch_runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(COMMAND, help="fetch, verify and unpack a model repository artifact")
    p.add_argument(Flag.URI, required=True, help="file://, http(s)://, s3:// or pvc:// URI")
    p.add_argument(Flag.SHA256, required=True, help="expected sha256 of the artifact (hex)")
    p.add_argument(Flag.DEST, required=True, type=Path, help="directory to install into")
    p.add_argument(Flag.S3_ENDPOINT, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    p.add_argument(Flag.CREDENTIALS_DIR, type=Path, help="mounted Secret with credential files")
    p.add_argument(
        Flag.CREDENTIALS_HOST,
        action="append",
        default=[],
        metavar="HOST",
        help="host[:port], *.domain or s3 bucket that may receive credentials (repeatable)",
    )
    p.add_argument(
        Flag.ALLOW_FILE, action="store_true", help="allow file:// URIs (sandbox and tests only)"
    )
    p.add_argument(
        Flag.PVC_ROOT, type=Path, default=DEFAULT_PVC_ROOT, help="where claims are mounted"
    )
    p.add_argument(Flag.MAX_BYTES, type=int, default=DEFAULT_MAX_BYTES, help="artifact size limit")
    p.add_argument(
        Flag.MAX_RATIO,
        type=float,
        default=DEFAULT_MAX_RATIO,
        help="unpacked size limit as a multiple of the artifact's size (default: %(default)g)",
    )
    p.add_argument(
        Flag.DEADLINE,
        type=float,
        default=DEFAULT_DEADLINE_S,
        metavar="SECONDS",
        help="longest the download may take, retries included (default: %(default)g)",
    )
    serving = p.add_argument_group("serving settings written into every config.pbtxt")
    serving.add_argument(Flag.INSTANCE_COUNT, type=int, help="model instances per server")
    serving.add_argument(Flag.INSTANCE_KIND, choices=["KIND_CPU", "KIND_GPU"])
    serving.add_argument(Flag.MAX_QUEUE_DELAY_US, type=int, help="enable dynamic batching")
    serving.add_argument(
        Flag.PREFERRED_BATCH_SIZE, type=int, action="append", default=[], help="repeatable"
    )
    p.add_argument(
        Flag.MAX_UNPACKED_BYTES, type=int, help="unpacked size limit (default: 2 x --max-bytes)"
    )
    add_tool_commands(commands)
    return parser


@contextmanager
def _progress() -> Iterator[Progress | None]:
    """A rich progress bar on a terminal; nothing at all in a pod's log."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), transient=True
    ) as bar:
        task = bar.add_task("downloading", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


class _Terminated(SystemExit):
    """The kubelet's SIGTERM, raised where the main thread is, so `finally` blocks run."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit so `pull` removes its staging directory on the way out."""
    raise _Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.command != COMMAND:
        try:
            return run_tool_command(args)
        except ToolError as exc:
            message = exc.message.replace("\n", " ")
            print(f"conch {args.command}: {exc.reason}: {message}", file=sys.stderr)
            return exc.exit_code
    try:
        config = SourceConfig.from_env(
            s3_endpoint=args.s3_endpoint,
            credentials_dir=args.credentials_dir,
            pvc_root=args.pvc_root,
            credentials_hosts=args.credentials_host,
            allow_file=args.allow_file,
        )
        with _progress() as progress:
            result = pull(
                args.uri,
                args.sha256,
                args.dest,
                PullOptions(
                    max_bytes=args.max_bytes,
                    max_unpacked_bytes=args.max_unpacked_bytes,
                    deadline=args.deadline,
                    max_ratio=args.max_ratio,
                    config=config,
                    overrides=ServingOverrides(
                        instance_count=args.instance_count,
                        instance_kind=args.instance_kind,
                        max_queue_delay_us=args.max_queue_delay_us,
                        preferred_batch_sizes=tuple(args.preferred_batch_size),
                    ),
                ),
                progress=progress,
            )
    except PullError as exc:
        message = exc.message.replace("\n", " ")  # one line, whatever a library said
        print(f"conch pull: {exc.reason}: {message}", file=sys.stderr)
        return exc.exit_code
    except _Terminated as exc:  # staging is already gone: pull's `finally` ran
        print(
            f"conch pull: Terminated: stopped by {exc.signal_name}; nothing installed",
            file=sys.stderr,
        )
        return int(exc.code or 1)
    if result.skipped:
        print(f"{result.dest}: already holds sha256 {result.sha256}")
    else:
        print(
            f"{result.dest}: {result.files} files, {result.unpacked_bytes} bytes "
            f"from {result.uri} ({result.downloaded_bytes} bytes, {result.attempts} attempt(s))"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
