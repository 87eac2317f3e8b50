"""What a tenant's ModelService may put into a pod: the cluster admin's `PodPolicy`.

Creating a ModelService amounts to creating pods, with the operator's rights rather than
the tenant's. So every field that reaches the pod spec beyond what Conch sets itself
(the Triton image, priority class, tolerations, node selector, node affinity, Triton
flags) is bounded by settings the admin owns: operator flags, set from chart values.
`violations` is pure: the controller refuses a spec that has any, with reason
PolicyViolation, and creates nothing for it.

Conch's own additions are not the tenant's wish and are always allowed: the
`nvidia.com/gpu` toleration for GPU replicas, and `resources.gpuProduct` as the
`nvidia.com/gpu.product` node selector.

Lists take exact names; `*` alone means any. Triton flags are an allowlist of full names:
an abbreviation, an unknown flag, a short option or a positional argument is refused,
so a prefix Triton would expand (`--model-repo=`) can never slip past the check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from conch.api.modelservice import ModelServiceSpec
from conch.tritonargs import Arg, Kind, parse

__all__ = [
    "ANY",
    "MANAGED_TRITON_FLAGS",
    "ImageRule",
    "PodPolicy",
    "image_rule",
    "triton_flags",
    "violations",
]

ANY: Final = "*"

MANAGED_TRITON_FLAGS: Final = frozenset(
    {
        "model-repository",
        "model-store",
        "http-port",
        "grpc-port",
        "metrics-port",
        "http-address",
        "grpc-address",
        "metrics-address",
        "allow-metrics",
        "strict-readiness",
        "exit-on-error",
        "metrics-config",
    }
)
"""Flags Conch sets on every Triton it runs; never the tenant's, even with `*`."""

DEFAULT_TRITON_IMAGES: Final = ("nvcr.io/nvidia/tritonserver",)
DEFAULT_TOLERATION_KEYS: Final = ("nvidia.com/gpu",)
DEFAULT_NODE_SELECTOR_KEYS: Final = (
    "nvidia.com/gpu.product",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
)
DEFAULT_TRITON_FLAGS: Final = (
    "--log-verbose",
    "--log-info",
    "--log-warning",
    "--log-error",
    "--log-format",
    "--exit-timeout-secs",
    "--http-thread-count",
    "--grpc-infer-allocation-pool-size",
    "--buffer-manager-thread-count",
    "--model-load-thread-count",
    "--pinned-memory-pool-byte-size",
    "--cuda-memory-pool-byte-size",
    "--metrics-interval-ms",
)
"""Logging and performance knobs only: none names a path, an address, a port, a model or
a plugin, and none changes what Conch relies on (readiness, metrics, the repository)."""

# Docker's reference grammar (distribution/reference), without IPv6 registry hosts.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_PATH = re.compile(_PATH_PART)
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")
_DIGEST_ONLY = re.compile(_DIGEST)
_TAG_PREFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Image:
    """An image reference, its repository normalised the way container runtimes do."""

    repository: str
    """registry/path, e.g. nvcr.io/nvidia/tritonserver, docker.io/library/busybox."""
    tag: str | None
    digest: str | None


def _repository(name: str) -> str | None:
    """`name` with Docker Hub's implicit registry and `library/` spelled out; None if invalid."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
        if "/" not in path:
            path = f"library/{path}"
    if not all(_PATH.fullmatch(part) for part in path.split("/")):
        return None
    return f"{domain}/{path}"


def parse_image(reference: str) -> Image | None:
    """The parts of an image reference, or None when a runtime would not accept it."""
    match = _REFERENCE.fullmatch(reference)
    repository = _repository(match["name"]) if match else None
    if match is None or repository is None:
        return None
    return Image(repository, match["tag"], match["digest"])


@dataclass(frozen=True)
class ImageRule:
    """One allowed-images entry: a repository, a repository namespace, a tag or a digest.

    - `registry/path/` (trailing slash): any repository under that namespace;
    - `registry/path`: that repository only, any tag or digest (`registry/path:` too);
    - `registry/path:TAG`: that tag; `registry/path:PREFIX*`: tags starting with PREFIX;
    - `registry/path@sha256:...`: that digest;
    - `*`: any image.

    Matching is on whole path segments: `nvcr.io/nvidia/tritonserver` does not allow
    `nvcr.io/nvidia/tritonserver-evil` nor `nvcr.io/nvidia/tritonserver/evil`.
    """

    entry: str
    repository: str = ""
    namespace: bool = False
    tag: str | None = None
    tag_prefix: bool = False
    digest: str | None = None

    def allows(self, image: Image) -> bool:
        if self.entry == ANY:
            return True
        if self.namespace:
            return image.repository.startswith(self.repository)
        if image.repository != self.repository:
            return False
        if self.digest is not None:
            return image.digest == self.digest
        if self.tag is None:
            return True
        if self.tag_prefix:
            return image.tag is not None and image.tag.startswith(self.tag)
        return image.tag == self.tag


def image_rule(entry: str) -> ImageRule:
    """Parse an allowed-images entry; ValueError when it is not one of ImageRule's forms."""
    if entry == ANY:
        return ImageRule(entry)
    invalid = ValueError(
        f"allowed Triton image {entry!r}: expected REGISTRY/PATH/, REGISTRY/PATH, "
        "REGISTRY/PATH:TAG, REGISTRY/PATH:PREFIX*, REGISTRY/PATH@sha256:HEX or *"
    )
    if entry.endswith("/"):  # parsed with a last segment, so that `registry.example/` is a registry
        image = parse_image(f"{entry}x")
        if image is None or image.tag or image.digest:
            raise invalid
        return ImageRule(entry, image.repository.removesuffix("x"), namespace=True)
    base, at, digest = entry.partition("@")
    name, colon, tag = base.rpartition(":") if ":" in base.rsplit("/", 1)[-1] else (base, "", "")
    tag_prefix = tag.endswith("*")
    tag = tag.removesuffix("*")
    image = parse_image(name)
    if (
        image is None
        or image.tag
        or image.digest
        or (at and (colon or not _DIGEST_ONLY.fullmatch(digest)))
        or (tag and not _TAG_PREFIX.fullmatch(tag))
    ):
        raise invalid
    if at:
        return ImageRule(entry, image.repository, digest=digest)
    if tag_prefix or tag:
        return ImageRule(entry, image.repository, tag=tag, tag_prefix=tag_prefix)
    return ImageRule(entry, image.repository)


def _flag_entry(entry: str) -> str:
    flag = entry if entry.startswith("--") or entry == ANY else f"--{entry}"
    if flag != ANY and not _FLAG.fullmatch(flag):
        raise ValueError(
            f"allowed Triton flag {entry!r}: expected a full flag name, e.g. --log-verbose"
        )
    return flag


@dataclass(frozen=True)
class PodPolicy:
    """The admin's bounds on what a ModelService may put into its pods (operator flags)."""

    allowed_triton_images: tuple[str, ...] = DEFAULT_TRITON_IMAGES
    require_image_digest: bool = False
    allowed_priority_classes: tuple[str, ...] = ()
    """Empty: spec.scheduling.priorityClassName must be unset."""
    allowed_toleration_keys: tuple[str, ...] = DEFAULT_TOLERATION_KEYS
    allowed_node_selector_keys: tuple[str, ...] = DEFAULT_NODE_SELECTOR_KEYS
    """Also bounds the keys of spec.scheduling.affinity.nodeAffinity terms."""
    allowed_triton_flags: tuple[str, ...] = DEFAULT_TRITON_FLAGS
    """Full flag names (`--log-verbose`; the leading dashes may be left out)."""

    def __post_init__(self) -> None:
        # Fail at operator start, not at the first ModelService.
        for entry in self.allowed_triton_images:
            image_rule(entry)
        flags = tuple(_flag_entry(entry) for entry in self.allowed_triton_flags)
        object.__setattr__(self, "allowed_triton_flags", flags)

    @property
    def image_rules(self) -> tuple[ImageRule, ...]:
        return tuple(image_rule(entry) for entry in self.allowed_triton_images)


def _setting(flag: str, value: str) -> str:
    return f"(operator flag --{flag}, chart value policy.{value})"


def _listing(allowed: Iterable[str]) -> str:
    names = sorted(allowed)
    return ", ".join(names) if names else "none"


def _image(image: str, policy: PodPolicy) -> list[str]:
    where = f"spec.triton.image {image!r}"
    parsed = parse_image(image)
    if parsed is None:
        return [f"{where} is not a valid image reference"]
    out = []
    if not any(rule.allows(parsed) for rule in policy.image_rules):
        out.append(
            f"{where} is not an allowed Triton image; allowed: "
            f"{_listing(policy.allowed_triton_images)} "
            f"{_setting('allowed-triton-image', 'allowedTritonImages')}"
        )
    if policy.require_image_digest and not (parsed.digest and _SHA256.fullmatch(parsed.digest)):
        out.append(
            f"{where} is not pinned by digest (IMAGE@sha256:<64 hex>), which the admin requires "
            f"{_setting('require-image-digest', 'requireImageDigest')}"
        )
    return out


def _priority_class(name: str | None, policy: PodPolicy) -> list[str]:
    allowed = policy.allowed_priority_classes
    if not name or ANY in allowed or name in allowed:
        return []
    return [
        f"spec.scheduling.priorityClassName {name!r} is not allowed; allowed: {_listing(allowed)} "
        f"{_setting('allowed-priority-class', 'allowedPriorityClasses')}"
    ]


def _tolerations(spec: ModelServiceSpec, policy: PodPolicy) -> list[str]:
    allowed = policy.allowed_toleration_keys
    if ANY in allowed or spec.scheduling is None:
        return []
    setting = _setting("allowed-toleration-key", "allowedTolerationKeys")
    out = []
    for i, toleration in enumerate(spec.scheduling.tolerations):
        where = f"spec.scheduling.tolerations[{i}]"
        if not toleration.key:
            out.append(
                f"{where} has no key: it tolerates every taint, allowed only when the "
                f"toleration keys include '*' {setting}"
            )
        elif toleration.key not in allowed:
            out.append(
                f"{where}.key {toleration.key!r} is not an allowed toleration key; "
                f"allowed: {_listing(allowed)} {setting}"
            )
    return out


def _node_affinity_keys(affinity: dict[str, Any] | None) -> Iterator[tuple[str, Any]]:
    """(path, key) of every nodeAffinity match expression and field.

    Malformed shapes are skipped: the API server refuses such a Deployment anyway.
    """
    node = (affinity or {}).get("nodeAffinity")
    if not isinstance(node, dict):
        return
    base = "spec.scheduling.affinity.nodeAffinity"
    terms: list[tuple[str, Any]] = []
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if isinstance(required, dict) and isinstance(required.get("nodeSelectorTerms"), list):
        field = f"{base}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        terms += [(f"{field}[{i}]", t) for i, t in enumerate(required["nodeSelectorTerms"])]
    preferred = node.get("preferredDuringSchedulingIgnoredDuringExecution")
    if isinstance(preferred, list):
        field = f"{base}.preferredDuringSchedulingIgnoredDuringExecution"
        terms += [
            (f"{field}[{i}].preference", p.get("preference"))
            for i, p in enumerate(preferred)
            if isinstance(p, dict)
        ]
    for path, term in terms:
        if not isinstance(term, dict):
            continue
        for kind in ("matchExpressions", "matchFields"):
            requirements = term.get(kind)
            if isinstance(requirements, list):
                for j, requirement in enumerate(requirements):
                    if isinstance(requirement, dict):
                        yield f"{path}.{kind}[{j}].key", requirement.get("key")


def _node_selection(spec: ModelServiceSpec, policy: PodPolicy) -> list[str]:
    allowed = policy.allowed_node_selector_keys
    if ANY in allowed or spec.scheduling is None:
        return []
    tail = f"allowed: {_listing(allowed)} {_setting('allowed-node-selector-key', 'allowedNodeSelectorKeys')}"
    out = [
        f"spec.scheduling.nodeSelector key {key!r} is not an allowed node selector key; {tail}"
        for key in spec.scheduling.node_selector
        if key not in allowed
    ]
    out += [
        f"{path} {key!r} is not an allowed node selector key; {tail}"
        for path, key in _node_affinity_keys(spec.scheduling.affinity)
        if key not in allowed
    ]
    return out


def triton_flags(args: Sequence[str]) -> list[Arg]:
    """`args` as tritonserver resolves them (getopt_long: `=` or space form, prefixes)."""
    return parse(args)


def _flag_problem(arg: Arg, allowed: frozenset[str]) -> str | None:
    """Why this argument may not reach Triton, or None when it may."""
    listing = (
        f"allowed: {_listing(allowed)} {_setting('allowed-triton-flag', 'allowedTritonFlags')}"
    )
    if arg.kind is Kind.END_OF_OPTIONS:
        return "ends Triton's options: what follows would not be checked as flags"
    if arg.kind is Kind.SHORT:
        return f"is a short option; Triton takes only full --flags; {listing}"
    if arg.kind is Kind.POSITIONAL:
        return f"is not a flag (Triton takes no positional arguments); {listing}"
    if arg.kind is Kind.AMBIGUOUS:
        return f"is ambiguous to Triton (it could be {', '.join('--' + c for c in arg.candidates)}); {listing}"
    full = f"--{arg.name}"
    if arg.name in MANAGED_TRITON_FLAGS:
        verb = "abbreviates" if arg.kind is Kind.ABBREVIATION else "sets"
        return f"{verb} {full}, which Conch manages"
    if arg.kind is Kind.ABBREVIATION:
        permitted = "allowed" if full in allowed or ANY in allowed else "not allowed"
        return f"is Triton's abbreviation of {full} ({permitted}); write allowed flags in full; {listing}"
    if full in allowed or ANY in allowed:
        return arg.problem
    known = "is not a Triton flag" if arg.kind is Kind.UNKNOWN else "is not an allowed Triton flag"
    return f"{known}; {listing}"


def _flags(extra_args: Sequence[str], policy: PodPolicy) -> list[str]:
    allowed = frozenset(policy.allowed_triton_flags)
    out = []
    for arg in triton_flags(extra_args):
        problem = _flag_problem(arg, allowed)
        if problem is not None:
            out.append(f"spec.triton.extraArgs[{arg.index}] {arg.written!r} {problem}")
    return out


def violations(spec: ModelServiceSpec, policy: PodPolicy) -> list[str]:
    """Every way `spec` would put into a pod what `policy` does not allow; empty if none."""
    scheduling = spec.scheduling
    return [
        *_image(spec.triton.image, policy),
        *_priority_class(scheduling.priority_class_name if scheduling else None, policy),
        *_tolerations(spec, policy),
        *_node_selection(spec, policy),
        *_flags(spec.triton.extra_args, policy),
    ]
