"""PodPolicy: what a tenant's ModelService may put into a pod, and Triton's own reading of
its command line (getopt_long: `=` and space forms, unique-prefix abbreviations)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from conch import operator_main
from conch.api.modelservice import DEFAULT_TRITON_IMAGE, ModelServiceSpec
from conch.policy import PodPolicy, image_rule, parse_image, violations
from conch.tritonargs import Kind, parse

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32


def spec(**fields: Any) -> ModelServiceSpec:
    return ModelServiceSpec.model_validate({"modelVersion": "digits-v1", **fields})


def image_violations(image: str, policy: PodPolicy) -> list[str]:
    return violations(spec(triton={"image": image}), policy)


def flag_violations(*args: str, policy: PodPolicy | None = None) -> list[str]:
    return violations(spec(triton={"extraArgs": list(args)}), policy or PodPolicy())


def test_defaults_allow_the_examples_and_the_default_image() -> None:
    policy = PodPolicy()
    for path in [ROOT / "examples" / "modelservice.yaml", *(ROOT / "examples" / "demo").glob("*")]:
        raw = yaml.safe_load(path.read_text())
        assert violations(ModelServiceSpec.model_validate(raw["spec"]), policy) == [], path
    assert violations(spec(), policy) == []
    assert violations(spec(triton={"image": DEFAULT_TRITON_IMAGE}), policy) == []


# -- images ------------------------------------------------------------------------------

TRITON = PodPolicy(allowed_triton_images=("nvcr.io/nvidia/tritonserver",))
SANDBOX = PodPolicy(allowed_triton_images=("conch.dev/sandbox/",))
HUB = PodPolicy(allowed_triton_images=("busybox",))


@pytest.mark.parametrize(
    ("image", "policy", "allowed"),
    [
        ("nvcr.io/nvidia/tritonserver:25.10-py3", TRITON, True),
        (f"nvcr.io/nvidia/tritonserver@{DIGEST}", TRITON, True),
        (f"nvcr.io/nvidia/tritonserver:25.10-py3@{DIGEST}", TRITON, True),
        ("nvcr.io/nvidia/tritonserver", TRITON, True),
        # one path segment is one repository: no prefix tricks
        ("nvcr.io/nvidia/tritonserver-evil:25.10-py3", TRITON, False),
        ("nvcr.io/nvidia/tritonserver/evil:1", TRITON, False),
        ("nvcr.io/nvidia/tritonserverx", TRITON, False),
        ("nvcr.io.evil.example/nvidia/tritonserver:1", TRITON, False),
        ("evil.example/nvcr.io/nvidia/tritonserver:1", TRITON, False),
        ("nvcr.io:443/nvidia/tritonserver:1", TRITON, False),
        ("NVCR.IO/nvidia/tritonserver:1", TRITON, False),
        ("docker.io/nvidia/tritonserver:1", TRITON, False),
        ("nvidia/tritonserver:1", TRITON, False),
        # a namespace entry (trailing slash) allows what lies under it, and nothing beside it
        ("conch.dev/sandbox/tritonserver:dev", SANDBOX, True),
        ("conch.dev/sandbox/a/b:1", SANDBOX, True),
        ("conch.dev/sandboxed/tritonserver:dev", SANDBOX, False),
        ("conch.dev/tritonserver:dev", SANDBOX, False),
        # Docker Hub short names are normalised on both sides
        ("busybox:1.36", HUB, True),
        ("docker.io/library/busybox:1.36", HUB, True),
        ("library/busybox", HUB, True),
        ("evil/busybox:1", HUB, False),
        ("busybox:1", PodPolicy(allowed_triton_images=("*",)), True),
    ],
)
def test_image_prefixes(image: str, policy: PodPolicy, allowed: bool) -> None:
    found = image_violations(image, policy)
    assert (found == []) is allowed, found
    if not allowed:
        assert found == [
            f"spec.triton.image {image!r} is not an allowed Triton image; allowed: "
            f"{', '.join(policy.allowed_triton_images)} "
            "(operator flag --allowed-triton-image, chart value policy.allowedTritonImages)"
        ]


@pytest.mark.parametrize(
    ("entry", "image", "allowed"),
    [
        ("nvcr.io/nvidia/tritonserver:25.10-py3", "nvcr.io/nvidia/tritonserver:25.10-py3", True),
        ("nvcr.io/nvidia/tritonserver:25.10-py3", "nvcr.io/nvidia/tritonserver:25.10-py3x", False),
        ("nvcr.io/nvidia/tritonserver:25.10-py3", f"nvcr.io/nvidia/tritonserver@{DIGEST}", False),
        ("nvcr.io/nvidia/tritonserver:25.*", "nvcr.io/nvidia/tritonserver:25.10-py3", True),
        ("nvcr.io/nvidia/tritonserver:25.*", "nvcr.io/nvidia/tritonserver:24.10-py3", False),
        ("nvcr.io/nvidia/tritonserver:", "nvcr.io/nvidia/tritonserver:24.10-py3", True),
        (f"nvcr.io/nvidia/tritonserver@{DIGEST}", f"nvcr.io/nvidia/tritonserver:x@{DIGEST}", True),
        (f"nvcr.io/nvidia/tritonserver@{DIGEST}", "nvcr.io/nvidia/tritonserver:x", False),
        ("localhost:5000/triton", "localhost:5000/triton:1", True),
        ("localhost:5000/triton", "localhost:5001/triton:1", False),
    ],
)
def test_image_tags_and_digests(entry: str, image: str, allowed: bool) -> None:
    policy = PodPolicy(allowed_triton_images=(entry,))
    assert (image_violations(image, policy) == []) is allowed


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        (f"nvcr.io/nvidia/tritonserver@{DIGEST}", True),
        (f"nvcr.io/nvidia/tritonserver:25.10-py3@{DIGEST}", True),
        ("nvcr.io/nvidia/tritonserver:25.10-py3", False),
        ("nvcr.io/nvidia/tritonserver:sha256-" + "ab" * 32, False),
        ("nvcr.io/nvidia/tritonserver@sha512:" + "ab" * 64, False),
    ],
)
def test_digest_requirement(image: str, allowed: bool) -> None:
    policy = PodPolicy(require_image_digest=True)
    found = image_violations(image, policy)
    assert (found == []) is allowed
    if not allowed:
        assert any("requireImageDigest" in message for message in found)
        assert any("is not pinned by digest" in message for message in found)


@pytest.mark.parametrize(
    "image", ["nvcr.io/nvidia/Tritonserver:1", "nvcr.io/nvidia/tritonserver:1 --x", "a@b", "a//b"]
)
def test_malformed_images_are_refused(image: str) -> None:
    assert parse_image(image) is None
    assert image_violations(image, PodPolicy(allowed_triton_images=("*",))) == [
        f"spec.triton.image {image!r} is not a valid image reference"
    ]


@pytest.mark.parametrize(
    "entry",
    ["", "/", "nvcr.io/Nvidia/", "nvcr.io//", "repo@sha256:short", "repo:tag@" + DIGEST, "a:b:c"],
)
def test_bad_image_entries_fail_at_start(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed Triton image"):
        PodPolicy(allowed_triton_images=(entry,))


@pytest.mark.parametrize(
    ("entry", "repository"),
    [
        ("nvcr.io/", "nvcr.io/"),
        ("conch.dev/sandbox/", "conch.dev/sandbox/"),
        ("localhost:5000/", "localhost:5000/"),
        ("myorg/", "docker.io/myorg/"),
    ],
)
def test_namespace_entries(entry: str, repository: str) -> None:
    rule = image_rule(entry)
    assert rule.namespace and rule.repository == repository


# -- Triton flags ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--log-verbose=1"], [(Kind.FLAG, "log-verbose", "1")]),
        (["--log-verbose", "1"], [(Kind.FLAG, "log-verbose", "1")]),
        (["--model-repo=/x"], [(Kind.ABBREVIATION, "model-repository", "/x")]),
        (["--model-st", "/x"], [(Kind.ABBREVIATION, "model-repository", "/x")]),
        # a value is the next argument, whatever it looks like (as getopt_long takes it)
        (["--log-verbose", "--model-repository=/x"], [(Kind.FLAG, "log-verbose", "--model-repository=/x")]),
        (["--id"], [(Kind.FLAG, "id", None)]),
        (["--mod=/x"], [(Kind.AMBIGUOUS, None, None)]),
        (["--nope=1"], [(Kind.UNKNOWN, "nope", "1")]),
        (["-x"], [(Kind.SHORT, None, None)]),
        (["/x"], [(Kind.POSITIONAL, None, None)]),
        (["-"], [(Kind.POSITIONAL, None, None)]),
        (["--disable-auto-complete-config", "/x"], [(Kind.FLAG, "disable-auto-complete-config", None), (Kind.POSITIONAL, None, None)]),
        (["--", "--log-verbose=1"], [(Kind.END_OF_OPTIONS, None, None), (Kind.POSITIONAL, None, None)]),
    ],
)  # fmt: skip
def test_triton_parses_like_getopt_long(
    args: list[str], expected: list[tuple[Kind, str | None, str | None]]
) -> None:
    assert [(a.kind, a.name, a.value) for a in parse(args)] == expected


def test_a_missing_value_and_a_value_for_a_switch_are_problems() -> None:
    assert [a.problem for a in parse(["--log-verbose"])] == ["needs a value"]
    assert [a.problem for a in parse(["--disable-auto-complete-config=1"])] == ["takes no value"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-repository=/x"], "'--model-repository=/x' sets --model-repository, which Conch manages"),
        (["--model-repository", "/x"], "'--model-repository /x' sets --model-repository, which Conch manages"),
        (["--model-repo=/x"], "'--model-repo=/x' abbreviates --model-repository, which Conch manages"),
        (["--model-store=/x"], "'--model-store=/x' sets --model-store, which Conch manages"),
        (["--http-po=9"], "'--http-po=9' abbreviates --http-port, which Conch manages"),
        (["--strict-readiness=false"], "sets --strict-readiness, which Conch manages"),
        (["--log-verb=1"], "'--log-verb=1' is Triton's abbreviation of --log-verbose (allowed); write allowed flags in full"),
        (["--model-control-mode=poll"], "'--model-control-mode=poll' is not an allowed Triton flag; allowed: --buffer-manager-thread-count"),
        (["--load-model=other"], "'--load-model=other' is not an allowed Triton flag"),
        (["--backend-directory=/tmp"], "is not an allowed Triton flag"),
        (["--repoagent-directory=/tmp"], "is not an allowed Triton flag"),
        (["--allow-grpc=false"], "is not an allowed Triton flag"),
        (["--http-address=0.0.0.0"], "sets --http-address, which Conch manages"),  # the gate's loopback
        (["--metrics-addr=0.0.0.0"], "abbreviates --metrics-address, which Conch manages"),
        (["--cache-directory=/tmp"], "is not an allowed Triton flag"),
        (["--trace-config", "opentelemetry,url=evil.example"], "'--trace-config opentelemetry,url=evil.example' is not an allowed Triton flag"),
        (["--mod=/x"], "'--mod=/x' is ambiguous to Triton (it could be --model-store, --model-repository"),
        (["--no-such-flag"], "'--no-such-flag' is not a Triton flag; allowed:"),
        (["-x"], "'-x' is a short option; Triton takes only full --flags"),
        (["/models"], "'/models' is not a flag (Triton takes no positional arguments)"),
        (["--", "--x"], "'--' ends Triton's options"),
        (["--log-verbose"], "'--log-verbose' needs a value"),
        (["--log-verbose 1"], "'--log-verbose 1' is not a Triton flag"),
    ],
)  # fmt: skip
def test_flags_outside_the_allowlist_are_refused(args: list[str], message: str) -> None:
    found = flag_violations(*args)
    assert found, args
    assert message in found[0]
    assert found[0].startswith("spec.triton.extraArgs[0] ")


@pytest.mark.parametrize(
    "args",
    [
        ["--log-verbose=1"],
        ["--log-verbose", "1"],
        ["--log-info=false", "--log-format", "ISO8601", "--exit-timeout-secs=5"],
        ["--pinned-memory-pool-byte-size=0", "--log-verbose", "-1"],  # a value may start with -
    ],
)
def test_allowed_flags_pass(args: list[str]) -> None:
    assert flag_violations(*args) == []


def test_the_failing_argument_is_named_by_its_index() -> None:
    found = flag_violations("--log-verbose", "1", "--model-repo=/x")
    assert len(found) == 1 and found[0].startswith("spec.triton.extraArgs[2] '--model-repo=/x'")


def test_star_allows_any_full_flag_but_never_managed_ones_or_abbreviations() -> None:
    star = PodPolicy(allowed_triton_flags=("*",))
    assert flag_violations("--log-file=/tmp/x", "--a-future-flag=1", policy=star) == []
    assert flag_violations("--model-repository=/x", policy=star) != []
    assert flag_violations("--log-fi=/tmp/x", policy=star) != []
    assert flag_violations("-v", policy=star) != []


def test_admin_flags_may_be_written_without_dashes() -> None:
    policy = PodPolicy(allowed_triton_flags=("log-file",))
    assert policy.allowed_triton_flags == ("--log-file",)
    assert flag_violations("--log-file=/tmp/x", policy=policy) == []
    assert flag_violations("--log-verbose=1", policy=policy) != []
    with pytest.raises(ValueError, match="allowed Triton flag"):
        PodPolicy(allowed_triton_flags=("--Log File",))


# -- scheduling --------------------------------------------------------------------------


def scheduling_violations(policy: PodPolicy | None = None, **scheduling: Any) -> list[str]:
    return violations(spec(scheduling=scheduling), policy or PodPolicy())


@pytest.mark.parametrize(
    ("priority_class", "allowed_classes", "allowed"),
    [
        (None, (), True),
        ("system-node-critical", (), False),
        ("system-cluster-critical", ("serving",), False),
        ("serving", ("serving",), True),
        ("anything", ("*",), True),
    ],
)
def test_priority_class(
    priority_class: str | None, allowed_classes: tuple[str, ...], allowed: bool
) -> None:
    policy = PodPolicy(allowed_priority_classes=allowed_classes)
    found = scheduling_violations(policy, priorityClassName=priority_class)
    assert (found == []) is allowed
    if not allowed:
        assert found == [
            f"spec.scheduling.priorityClassName {priority_class!r} is not allowed; allowed: "
            f"{', '.join(allowed_classes) or 'none'} "
            "(operator flag --allowed-priority-class, chart value policy.allowedPriorityClasses)"
        ]


@pytest.mark.parametrize(
    ("toleration", "keys", "message"),
    [
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, None, None),
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, None, None),
        ({"operator": "Exists"}, None, "tolerations[0] has no key: it tolerates every taint"),
        ({"operator": "Exists"}, ("nvidia.com/gpu", "dedicated"), "has no key"),
        ({"operator": "Exists"}, ("*",), None),
        ({"key": "", "operator": "Exists"}, None, "has no key"),
        ({"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}, None,
         "tolerations[0].key 'node-role.kubernetes.io/control-plane' is not an allowed toleration key; allowed: nvidia.com/gpu"),
        ({"key": "dedicated", "operator": "Equal", "value": "ml"}, None, "is not an allowed toleration key"),
        ({"key": "dedicated", "operator": "Equal", "value": "ml"}, ("dedicated",), None),
    ],
)  # fmt: skip
def test_tolerations(
    toleration: dict[str, Any], keys: tuple[str, ...] | None, message: str | None
) -> None:
    policy = PodPolicy(allowed_toleration_keys=keys) if keys else PodPolicy()
    found = scheduling_violations(policy, tolerations=[toleration])
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and message in found[0]
        assert "policy.allowedTolerationKeys" in found[0]


def test_gpu_product_and_the_operator_gpu_toleration_need_no_setting() -> None:
    """Conch's own additions are not the tenant's wish: allowed with every list empty."""
    strict = PodPolicy(allowed_toleration_keys=(), allowed_node_selector_keys=())
    svc = spec(resources={"gpus": 1, "gpuProduct": "NVIDIA-L4"})
    assert violations(svc, strict) == []


@pytest.mark.parametrize(
    ("selector", "keys", "bad"),
    [
        ({"nvidia.com/gpu.product": "NVIDIA-L4", "topology.kubernetes.io/zone": "a"}, None, []),
        ({"kubernetes.io/hostname": "gpu-node-1"}, None, ["kubernetes.io/hostname"]),
        ({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/arch": "amd64"}, None,
         ["node-role.kubernetes.io/control-plane"]),
        ({"pool": "ml"}, ("pool",), []),
        ({"kubernetes.io/hostname": "n"}, ("*",), []),
    ],
)  # fmt: skip
def test_node_selector(
    selector: dict[str, str], keys: tuple[str, ...] | None, bad: list[str]
) -> None:
    policy = PodPolicy(allowed_node_selector_keys=keys) if keys else PodPolicy()
    found = scheduling_violations(policy, nodeSelector=selector)
    assert found == [
        f"spec.scheduling.nodeSelector key {key!r} is not an allowed node selector key; allowed: "
        f"{', '.join(sorted(policy.allowed_node_selector_keys))} "
        "(operator flag --allowed-node-selector-key, chart value policy.allowedNodeSelectorKeys)"
        for key in bad
    ]


REQUIRED = "spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "spec.scheduling.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"


def node_affinity(
    required: list[dict[str, Any]] | None = None, preferred: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    node: dict[str, Any] = {}
    if required is not None:
        node["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred is not None:
        node["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return {"nodeAffinity": node}


def expr(key: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": ["x"]}


@pytest.mark.parametrize(
    ("affinity", "paths"),
    [
        (node_affinity(required=[{"matchExpressions": [expr("topology.kubernetes.io/zone")]}]), []),
        (node_affinity(required=[]), []),
        (node_affinity(required=[{"matchExpressions": [expr("kubernetes.io/arch"), expr("kubernetes.io/hostname")]}]),
         [f"{REQUIRED}.nodeSelectorTerms[0].matchExpressions[1].key 'kubernetes.io/hostname'"]),
        (node_affinity(required=[{}, {"matchFields": [expr("metadata.name")]}]),
         [f"{REQUIRED}.nodeSelectorTerms[1].matchFields[0].key 'metadata.name'"]),
        (node_affinity(preferred=[{"weight": 1, "preference": {"matchExpressions": [expr("dedicated")]}}]),
         [f"{PREFERRED}[0].preference.matchExpressions[0].key 'dedicated'"]),
        ({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}, []),
        ({"nodeAffinity": "not an object"}, []),
    ],
)  # fmt: skip
def test_node_affinity_keys(affinity: dict[str, Any], paths: list[str]) -> None:
    found = scheduling_violations(affinity=affinity)
    assert [message.split(" is not an allowed")[0] for message in found] == paths
    assert all("policy.allowedNodeSelectorKeys" in message for message in found)


def test_every_violation_is_reported_at_once() -> None:
    svc = spec(
        triton={"image": "evil.example/triton:1", "extraArgs": ["--model-repo=/x"]},
        scheduling={
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "nodeSelector": {"kubernetes.io/hostname": "n"},
        },
    )
    assert len(violations(svc, PodPolicy())) == 5


# -- operator flags ----------------------------------------------------------------------


def operator_args(*argv: str) -> PodPolicy:
    parser = argparse.ArgumentParser(exit_on_error=False)
    operator_main.add_arguments(parser)
    return operator_main.pod_policy(parser.parse_args(list(argv)))


def test_operator_flags_build_the_policy() -> None:
    assert operator_args() == PodPolicy()
    policy = operator_args(
        "--allowed-triton-image=conch.dev/sandbox/",
        "--allowed-triton-image=nvcr.io/nvidia/tritonserver",
        "--require-image-digest",
        "--allowed-priority-class=serving",
        "--allowed-toleration-key=",  # given but empty: no key at all
        "--allowed-node-selector-key=pool",
        "--allowed-triton-flag=--log-file",
    )
    assert policy == PodPolicy(
        allowed_triton_images=("conch.dev/sandbox/", "nvcr.io/nvidia/tritonserver"),
        require_image_digest=True,
        allowed_priority_classes=("serving",),
        allowed_toleration_keys=(),
        allowed_node_selector_keys=("pool",),
        allowed_triton_flags=("--log-file",),
    )


@pytest.mark.parametrize(
    "argv", [["--allowed-triton-image=nvcr.io/Nvidia"], ["--allowed-triton-flag=--Log File"]]
)
def test_bad_operator_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(argparse.ArgumentError):
        operator_args(*argv)
