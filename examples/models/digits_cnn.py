"""The convolutional example model: a small CNN on scikit-learn's bundled 8x8 digits.

    python examples/models/digits_cnn.py OUT   # writes OUT/weights.pt, example.npz, validation.npz
    conch package digits_cnn:build --search-path examples/models --weights OUT/weights.pt \
        --example OUT/example.npz --validation OUT/validation.npz --output-names logits --int8 ...

`build` is the factory `conch package` calls (untrained; the weights come from the state
dict this script saves). Input `image` is [1, 8, 8] (pixels / 16); output `logits` is [10].
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
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, test images, train labels, test labels); images [N, 1, 8, 8]."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    split = train_test_split(x, digits.target, test_size=0.25, random_state=0)
    return split[0], split[1], split[2], split[3]


def train(epochs: int = 15) -> nn.Module:
    torch.manual_seed(0)
    x_train, _, y_train, _ = data()
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    return model.eval()


def main(out: Path) -> None:
    model = train()
    _, x_test, _, y_test = data()
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    np.savez(out / "example.npz", image=x_test[:8])
    np.savez(out / "validation.npz", image=x_test, labels=y_test.astype(np.int64))
    print(f"trained digits CNN: held-out accuracy {accuracy:.4f}; wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
