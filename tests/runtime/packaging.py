"""Small models and data for the package/validate tests (factories importable by name).

`TwoInputMLP` takes two inputs of different dtypes (fp32 features, int64 category) and
returns two outputs of different dtypes (fp32 logits, int64 arg-max), batched on dim 0.
`task()` is a synthetic 5-class problem it learns in well under a second.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

FEATURES, CATEGORIES, CLASSES = 16, 4, 5


class TwoInputMLP(nn.Module):
    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(CATEGORIES, hidden)
        self.fc1 = nn.Linear(FEATURES, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, CLASSES)

    def forward(
        self, features: torch.Tensor, category: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc1(features) + self.embed(category.squeeze(1)))
        logits = self.out(torch.relu(self.fc2(h)))
        return logits, logits.argmax(dim=1, keepdim=True)


def teacher() -> nn.Module:
    """The factory of the model to package (untrained; weights come from a state dict)."""
    torch.manual_seed(1)
    return TwoInputMLP(hidden=128)


def student() -> nn.Module:
    """A smaller model of the same interface, for distillation."""
    torch.manual_seed(2)
    return TwoInputMLP(hidden=24)


def task(samples: int, seed: int) -> dict[str, torch.Tensor]:
    """Inputs and labels of a fixed synthetic problem (the same rule for every seed)."""
    rule = torch.Generator().manual_seed(1234)
    weights = torch.randn(FEATURES, CLASSES, generator=rule)
    offsets = torch.randn(CATEGORIES, CLASSES, generator=rule)
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(samples, FEATURES, generator=g)
    category = torch.randint(0, CATEGORIES, (samples, 1), generator=g)
    labels = (features @ weights + 2 * offsets[category.squeeze(1)]).argmax(dim=1)
    return {"features": features, "category": category, "labels": labels}


@functools.cache
def trained_teacher(steps: int = 300) -> nn.Module:
    """The teacher trained on `task` (cached: callers must not modify it)."""
    model = teacher()
    data = task(2048, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        idx = torch.arange(step * 128, (step + 1) * 128) % 2048
        logits, _ = model(data["features"][idx], data["category"][idx])
        loss = nn.functional.cross_entropy(logits, data["labels"][idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


class Shifted(nn.Module):
    """A deliberately wrong model: the right interface, the logits shifted."""

    def __init__(self, inner: nn.Module, shift: float = 0.5) -> None:
        super().__init__()
        self.inner = inner
        self.shift = shift

    def forward(
        self, features: torch.Tensor, category: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _ = self.inner(features, category)
        logits = logits + self.shift * torch.arange(CLASSES, dtype=logits.dtype)
        return logits, logits.argmax(dim=1, keepdim=True)


OUTPUT_NAMES = ("logits", "label")


def example() -> dict[str, torch.Tensor]:
    """An example batch (no labels) to infer the signature from."""
    data = task(8, seed=3)
    del data["labels"]
    return data


def validation() -> dict[str, torch.Tensor]:
    """Labelled validation data: 256 samples, four batches at maxBatchSize 64."""
    return task(256, seed=7)


class Branchy(nn.Module):
    """fc(relu(x)) with a fast path that skips the relu when no feature is negative: each
    sample's answer is independent of the batch, but the branch depends on the data, so a
    trace of an all-positive example freezes the fast path and is wrong on the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(FEATURES, CLASSES)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if bool((features >= 0).all()):
            fast: torch.Tensor = self.fc(features)
            return fast
        scores: torch.Tensor = self.fc(features.clamp(min=0))
        return scores


class UnscriptableBranchy(Branchy):
    """The same branch behind `*inputs`, which torch.jit.script cannot compile."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(inputs[0])


def branchy() -> nn.Module:
    torch.manual_seed(3)
    return Branchy()


def unscriptable_branchy() -> nn.Module:
    torch.manual_seed(3)
    return UnscriptableBranchy()
