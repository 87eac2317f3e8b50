"""Serving settings the operator applies to a pulled repository's `config.pbtxt`.

A ModelService decides how its replicas run a model (instances, CPU or GPU, dynamic
batching); the artifact decides what the model is. The pull step writes the former into the
verified repository before Triton sees it, through Triton's own model-config protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conch_runtime.modeltree import CONFIG, parse_config


@dataclass(frozen=True)
class ServingOverrides:
    instance_count: int | None = None
    instance_kind: str | None = None
    """KIND_CPU or KIND_GPU."""
    max_queue_delay_us: int | None = None
    """Set to enable dynamic batching with this delay."""
    preferred_batch_sizes: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return self == ServingOverrides()


def apply(tree: Path, overrides: ServingOverrides) -> list[Path]:
    """Rewrite every `MODEL/config.pbtxt` under `tree`; returns the files changed."""
    if overrides.empty:
        return []
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    changed = []
    for path in sorted(tree.glob(f"*/{CONFIG}")):
        config = parse_config(path)
        if overrides.instance_count is not None or overrides.instance_kind is not None:
            group = mc.ModelInstanceGroup(count=overrides.instance_count or 1)
            group.kind = getattr(mc.ModelInstanceGroup, overrides.instance_kind or "KIND_AUTO")
            del config.instance_group[:]
            config.instance_group.append(group)
        if overrides.max_queue_delay_us is not None or overrides.preferred_batch_sizes:
            batching = config.dynamic_batching
            batching.SetInParent()
            if overrides.max_queue_delay_us is not None:
                batching.max_queue_delay_microseconds = overrides.max_queue_delay_us
            if overrides.preferred_batch_sizes:
                del batching.preferred_batch_size[:]
                batching.preferred_batch_size.extend(overrides.preferred_batch_sizes)
        path.write_text(text_format.MessageToString(config))
        changed.append(path)
    return changed
