"""`python -m conch_runtime package` and `validate` as a user runs them: real child processes,
a real tritonserver, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from conch_runtime.models import quiet_deprecations
from conch_runtime.tool_errors import ExportFailed, UnsupportedCompression
from tests.runtime.packaging import example, trained_teacher, validation

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conch_runtime", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "TERM": "dumb", "COLUMNS": "200"},
        check=False,
    )


def test_package_then_validate_from_the_command_line(tmp_path: Path) -> None:
    weights = tmp_path / "teacher.pt"
    torch.save(trained_teacher().state_dict(), weights)
    np.savez(tmp_path / "example.npz", **{k: v.numpy() for k, v in example().items()})
    np.savez(tmp_path / "validation.npz", **{k: v.numpy() for k, v in validation().items()})
    out = tmp_path / "pkg"
    done = run(
        "package", "tests.runtime.packaging:teacher", "--weights", str(weights),
        "--example", str(tmp_path / "example.npz"), "--output-names", "logits,label",
        "--validation", str(tmp_path / "validation.npz"), "--quantize", "int8",
        "--out", str(out), "--name", "mlp-cli", "--version", "2.0.0",
        "--baseline-version", "mlp-cli-1.0.0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Quantizing to int8" in done.stderr  # progress, one line per step
    assert "int8-static" in done.stdout and "mlp-cli-2.0.0.tar.gz" in done.stdout
    spec = yaml.safe_load((out / "modelversion.yaml").read_text())["spec"]
    assert spec["compression"]["quantization"] == "int8-static"

    checked = run("validate", str(out), "--json")
    assert checked.returncode == 0, checked.stderr + checked.stdout
    report = json.loads(checked.stdout)
    assert report["passed"] is True and report["max_abs_error"] <= 1e-4
    assert report["engine"].startswith("tritonserver")

    table = run("validate", str(out), "--atol", "0", "--rtol", "0")
    assert table.returncode in (0, 1)
    assert "validate mlp-cli (python)" in table.stdout and "latency" in table.stdout
    assert "batch sizes" in table.stdout and "1, 3, 7, 15, 31, 63, 64" in table.stdout


def test_errors_are_one_line_with_the_class_exit_code(tmp_path: Path) -> None:
    done = run(
        "package", "tests.runtime.packaging:teacher", "--int8", "--fp16",
        "--out", str(tmp_path / "x"), "--name", "m", "--version", "1",
    )  # fmt: skip
    assert done.returncode == UnsupportedCompression.exit_code == 24
    assert done.stderr.startswith("conch package: UnsupportedCompression: int8 and fp16")
    assert done.stderr.count("\n") == 1
    missing = run("validate", str(tmp_path / "absent"))
    assert missing.returncode == 26
    assert missing.stderr.startswith("conch validate: InvalidRepository: ")


def test_onnx_from_a_torchscript_file_is_one_plain_line(tmp_path: Path) -> None:
    script = tmp_path / "teacher.ts"
    with quiet_deprecations():
        torch.jit.save(torch.jit.trace(trained_teacher(), tuple(example().values())), str(script))  # type: ignore[no-untyped-call]
    np.savez(tmp_path / "example.npz", **{k: v.numpy() for k, v in example().items()})
    done = run(
        "package", str(script), "--format", "onnx", "--example", str(tmp_path / "example.npz"),
        "--output-names", "logits,label", "--out", str(tmp_path / "pkg"), "--name", "m",
        "--version", "1",
    )  # fmt: skip
    assert done.returncode == ExportFailed.exit_code == 25, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("conch package:")]
    assert line.startswith("conch package: ExportFailed: a TorchScript file cannot be exported")
    assert "--format torchscript or python" in line and len(line) < 400
    assert "\x1b" not in done.stderr and "\x1b" not in done.stdout
    assert not (tmp_path / "pkg").exists()
