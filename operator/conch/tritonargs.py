"""Read a tritonserver command line the way tritonserver reads it.

tritonserver parses its arguments with glibc's `getopt_long` and an empty short-option
string, so what reaches it is not what a string check sees:

- `--name=value` and `--name value` are the same; a flag that takes a value consumes the
  next argument even when it starts with `-`;
- any unambiguous prefix of a flag is that flag (`--model-repo=/x` is
  `--model-repository=/x`); a prefix shared only by aliases (`--model-store` and
  `--model-repository`) is not ambiguous; an exact name always wins over longer ones;
- `-x` is an (always unknown) short option, `--` ends the options.

`parse` resolves every argument to the full flag name tritonserver would act on, so a
policy can judge flags by what they do rather than by how they are spelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

# Every long option of tritonserver 2.x (server/src/command_line_parser.cc, and the
# `--help` of the nvidia-pytriton wheel's build): name -> whether it takes a value.
# Only `--help` and `--disable-auto-complete-config` take none.
OPTIONS: Final[Mapping[str, bool]] = {
    name: name not in {"help", "disable-auto-complete-config"}
    for name in (
        "help",
        "id",
        "exit-timeout-secs",
        "log-verbose",
        "log-info",
        "log-warning",
        "log-error",
        "log-format",
        "log-file",
        "model-store",
        "model-repository",
        "exit-on-error",
        "disable-auto-complete-config",
        "strict-readiness",
        "model-control-mode",
        "repository-poll-secs",
        "load-model",
        "model-config-name",
        "model-load-thread-count",
        "model-load-retry-count",
        "model-namespacing",
        "enable-peer-access",
        "allow-http",
        "http-address",
        "http-port",
        "reuse-http-port",
        "http-header-forward-pattern",
        "http-thread-count",
        "http-restricted-api",
        "allow-grpc",
        "grpc-address",
        "grpc-port",
        "reuse-grpc-port",
        "grpc-header-forward-pattern",
        "grpc-infer-thread-count",
        "grpc-infer-allocation-pool-size",
        "grpc-max-response-pool-size",
        "grpc-use-ssl",
        "grpc-use-ssl-mutual",
        "grpc-server-cert",
        "grpc-server-key",
        "grpc-root-cert",
        "grpc-infer-response-compression-level",
        "grpc-keepalive-time",
        "grpc-keepalive-timeout",
        "grpc-keepalive-permit-without-calls",
        "grpc-http2-max-pings-without-data",
        "grpc-http2-min-recv-ping-interval-without-data",
        "grpc-http2-max-ping-strikes",
        "grpc-max-connection-age",
        "grpc-max-connection-age-grace",
        "grpc-restricted-protocol",
        "allow-sagemaker",
        "sagemaker-port",
        "sagemaker-safe-port-range",
        "sagemaker-thread-count",
        "allow-vertex-ai",
        "vertex-ai-port",
        "vertex-ai-thread-count",
        "vertex-ai-default-model",
        "allow-metrics",
        "allow-gpu-metrics",
        "allow-cpu-metrics",
        "metrics-address",
        "metrics-port",
        "metrics-interval-ms",
        "metrics-config",
        "trace-config",
        "trace-file",
        "trace-level",
        "trace-rate",
        "trace-count",
        "trace-log-frequency",
        "cache-config",
        "cache-directory",
        "rate-limit",
        "rate-limit-resource",
        "pinned-memory-pool-byte-size",
        "cuda-memory-pool-byte-size",
        "cuda-virtual-address-size",
        "min-supported-compute-capability",
        "buffer-manager-thread-count",
        "host-policy",
        "model-load-gpu-limit",
        "backend-directory",
        "backend-config",
        "repoagent-directory",
        "strict-model-config",
        "response-cache-byte-size",
    )
}

ALIASES: Final[Mapping[str, str]] = {"model-store": "model-repository"}
"""Names getopt treats as one option (same value id): a prefix of both is not ambiguous."""


class Kind(Enum):
    """How tritonserver's parser takes one argument."""

    FLAG = "flag"
    """A known flag, written in full (or as a full alias)."""
    ABBREVIATION = "abbreviation"
    """An unambiguous prefix of a known flag: tritonserver acts on the full flag."""
    UNKNOWN = "unknown"
    """`--name` matching no flag this table knows (tritonserver refuses it, or is newer)."""
    AMBIGUOUS = "ambiguous"
    """A prefix of several flags: tritonserver refuses it."""
    SHORT = "short"
    """`-x`: tritonserver has no short options."""
    POSITIONAL = "positional"
    """Not an option at all (or anything after `--`)."""
    END_OF_OPTIONS = "end-of-options"
    """`--`: everything after it is positional."""


@dataclass(frozen=True)
class Arg:
    """One option (or stray argument) as tritonserver resolves it."""

    index: int
    """Position of its first element in the argument list."""
    written: str
    """As written; the space form joins flag and value with a space."""
    kind: Kind
    name: str | None = None
    """The full flag it resolves to (FLAG, ABBREVIATION), or the name as written (UNKNOWN)."""
    value: str | None = None
    candidates: tuple[str, ...] = ()
    """Flags an AMBIGUOUS prefix could mean."""
    problem: str | None = None
    """Why tritonserver would refuse it even though the flag resolves (missing or extra value)."""


def resolve(name: str) -> tuple[Kind, tuple[str, ...]]:
    """Resolve a long option name as getopt_long does: exact, unique prefix, or neither."""
    if name in OPTIONS:
        return Kind.FLAG, (name,)
    matches = tuple(option for option in OPTIONS if option.startswith(name))
    targets = {ALIASES.get(option, option) for option in matches}
    if len(targets) == 1:
        return Kind.ABBREVIATION, (targets.pop(),)
    if matches:
        return Kind.AMBIGUOUS, matches
    return Kind.UNKNOWN, ()


def _long(args: Sequence[str], i: int) -> tuple[Arg, int]:
    """The long option at args[i] and the index of the next unread argument."""
    arg = args[i]
    name, eq, inline = arg[2:].partition("=")
    kind, names = resolve(name)
    if kind is Kind.AMBIGUOUS:
        return Arg(i, arg, kind, candidates=names), i + 1
    if kind is Kind.UNKNOWN:  # tritonserver stops here; its arity is unknown, take nothing
        return Arg(i, arg, kind, name=name, value=inline if eq else None), i + 1
    full = names[0]
    if not OPTIONS[full]:
        problem = "takes no value" if eq else None
        return Arg(i, arg, kind, name=full, value=inline if eq else None, problem=problem), i + 1
    if eq:
        return Arg(i, arg, kind, name=full, value=inline), i + 1
    if i + 1 < len(args):  # getopt takes the next argument as the value, whatever it is
        value = args[i + 1]
        return Arg(i, f"{arg} {value}", kind, name=full, value=value), i + 2
    return Arg(i, arg, kind, name=full, problem="needs a value"), i + 1


def parse(args: Sequence[str]) -> list[Arg]:
    """Every option and stray argument in `args`, resolved as tritonserver resolves them."""
    out: list[Arg] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.append(Arg(i, arg, Kind.END_OF_OPTIONS))
            out.extend(Arg(j, args[j], Kind.POSITIONAL) for j in range(i + 1, len(args)))
            break
        if arg.startswith("--"):
            parsed, i = _long(args, i)
            out.append(parsed)
            continue
        kind = Kind.SHORT if arg.startswith("-") and arg != "-" else Kind.POSITIONAL
        out.append(Arg(i, arg, kind))
        i += 1
    return out
