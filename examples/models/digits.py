"""The example model: an MLP trained in seconds on scikit-learn's bundled digits data.

    python examples/models/digits.py OUT     # writes OUT/weights.pt, example.npz, validation.npz
    conch package digits:build --search-path examples/models --weights OUT/weights.pt ...

`build` is the factory `conch package` calls (untrained; the weights come from the state
dict this script saves).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def build() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


def main(out: Path) -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0
    )
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(15):
        for batch in torch.randperm(len(inputs)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    model.eval()
    accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    np.savez(out / "example.npz", pixels=x_test[:8])
    np.savez(out / "validation.npz", pixels=x_test, labels=y_test.astype(np.int64))
    print(f"trained digits MLP: held-out accuracy {accuracy:.4f}; wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
