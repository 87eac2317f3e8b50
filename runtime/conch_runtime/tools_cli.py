"""The `package` and `validate` subcommands: arguments in, API call, a readable summary out.

torch and the Triton client are imported inside the handlers, so `pull` does not pay for
them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.table import Table

from conch_runtime.tool_errors import InvalidData, InvalidSignature

if TYPE_CHECKING:
    from conch_runtime.package import PackageResult

__all__ = ["add_package_arguments", "add_tool_commands", "package_from_args", "run_tool_command"]


def add_tool_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "package", help="compress, export and package a model as a Triton repository artifact"
    )
    p.add_argument(
        "model", help="model.pt2 (torch.export), a TorchScript file, or package.module:factory"
    )
    add_package_arguments(p, required=True)
    p.add_argument("--uri", help="where the artifact will live (default: its file:// path)")

    v = commands.add_parser(
        "validate", help="serve a package on a real Triton and compare with its reference"
    )
    v.add_argument("package", type=Path, help="package directory written by `package`")
    v.add_argument("--atol", type=float, help="absolute tolerance (default by precision)")
    v.add_argument("--rtol", type=float, help="relative tolerance")
    v.add_argument("--json", action="store_true", help="print the report as JSON")

    u = commands.add_parser(
        "push", help="upload a package's artifact to S3 and point its ModelVersion at it"
    )
    u.add_argument("package", type=Path, help="package directory written by `package`")
    u.add_argument("--to", required=True, metavar="s3://BUCKET[/PREFIX]", help="where to")
    u.add_argument("--endpoint", metavar="URL", help="S3 endpoint (default: $AWS_ENDPOINT_URL)")
    u.add_argument(
        "--credentials-secret",
        metavar="NAME",
        help="Secret the pods pull with (credentialsSecretRef)",
    )


def add_package_arguments(p: argparse.ArgumentParser, *, required: bool) -> list[str]:
    """`package`'s options but the model and `--uri`, on `p`; their dests. `conch publish`
    adds the same options, so a model is packaged the same way by either command (there,
    `required=False`: it may be given a package instead)."""
    dests: list[str] = []

    def add(group: argparse._ActionsContainer, *flags: str, **options: Any) -> None:
        dests.append(group.add_argument(*flags, **options).dest)

    add(p, "--weights", type=Path, help="state dict for a module:factory")
    add(p, "--search-path", type=Path, action="append", default=[], help="import path")
    add(p, "--out", type=Path, required=required, help="new package directory")
    add(p, "--name", required=required, help="model name (a DNS label), the Triton model name")
    add(p, "--version", required=required, help="version label, e.g. 1.2.0")
    add(p, "--format", choices=["python", "torchscript", "onnx"], default="python")
    sig = p.add_argument_group("signature (given, or inferred from an example)")
    add(sig, "--signature", type=Path, help="YAML/JSON: inputs, outputs, maxBatchSize")
    add(sig, "--example", type=Path, help=".npz of a batch: input name -> array")
    add(sig, "--output-names", help="comma-separated names of the outputs")
    add(
        sig,
        "--dynamic",
        action="append",
        default=[],
        metavar="NAME:AXIS",
        help="a per-sample axis (0-based) of a tensor that varies; repeatable",
    )
    add(sig, "--max-batch-size", type=int, default=64)
    comp = p.add_argument_group("compression (each optional)")
    add(
        comp,
        "--quantize",
        choices=["int8", "none"],
        default="none",
        help="int8: static quantization (x86 kernels), scales calibrated on --calibration",
    )
    add(comp, "--int8", action="store_true", help="the same as --quantize int8")
    add(
        comp,
        "--calibration",
        type=Path,
        help=".npz inputs that fix int8 activation scales (default: the validation data)",
    )
    add(comp, "--sparsity", type=float, help="magnitude-prune this share of weights")
    add(comp, "--fp16", action="store_true", help="half precision (GPU targets)")
    add(comp, "--distill-student", help="module:factory of the student to distill")
    add(comp, "--distill-data", type=Path, help=".npz training inputs (+ labels)")
    add(comp, "--distill-epochs", type=int, default=30)
    add(comp, "--teacher-version", help="ModelVersion of the teacher (distilledFrom)")
    add(comp, "--baseline-version", help="ModelVersion of the uncompressed model")
    val = p.add_argument_group("validation data")
    add(val, "--validation", type=Path, help=".npz inputs (+ labels) to measure on")
    add(val, "--validation-samples", type=int, default=64, help="generated if none")
    serve = p.add_argument_group("serving")
    add(serve, "--device", choices=["cpu", "gpu"], default="cpu")
    add(serve, "--instances", type=int, default=1)
    add(serve, "--max-queue-delay-us", type=int, default=2000)
    add(serve, "--torch-threads", type=int, default=1)
    return dests


def run_tool_command(args: argparse.Namespace) -> int:
    if args.command == "package":
        return _package(args)
    if args.command == "push":
        return _push(args)
    return _validate(args)


def _push(args: argparse.Namespace) -> int:
    from conch_runtime.push import push

    result = push(
        args.package,
        args.to,
        endpoint=args.endpoint,
        credentials_secret=args.credentials_secret,
    )
    table = Table(title=f"pushed {args.package}", show_header=False)
    table.add_row("uri", result.uri)
    table.add_row("sha256", result.sha256)
    table.add_row("bytes", str(result.size_bytes))
    table.add_row("ModelVersion", f"{result.modelversion} (kubectl apply -f)")
    Console(stderr=True).print(table)
    return 0


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidSignature(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSignature(f"{path}: expected a mapping")
    return data


def _dynamic(values: list[str]) -> dict[str, list[int]]:
    axes: dict[str, list[int]] = {}
    for value in values:
        name, _, axis = value.rpartition(":")
        if not name or not axis.isdigit():
            raise InvalidSignature(f"--dynamic {value!r}: expected NAME:AXIS")
        axes.setdefault(name, []).append(int(axis))
    return axes


def package_from_args(model: str, out: Path, args: argparse.Namespace) -> PackageResult:
    """Package `model` into `out` as the options of `add_package_arguments` say."""
    from conch_runtime.compress import CompressionOptions, DistillOptions
    from conch_runtime.data import load_npz
    from conch_runtime.package import PackageRequest, package
    from conch_runtime.progress import RichReporter
    from conch_runtime.repository import ServingOptions
    from conch_runtime.signature import Signature

    signature = None
    if args.signature is not None:
        data = _read_mapping(args.signature)
        signature = Signature.from_dict(data.get("signature", data))
    distill = None
    if args.distill_student:
        if args.distill_data is None:
            raise InvalidData("--distill-student needs --distill-data")
        distill = DistillOptions(
            student=args.distill_student,
            data=load_npz(args.distill_data),
            epochs=args.distill_epochs,
            teacher_version=args.teacher_version,
            search_path=tuple(args.search_path),
        )
    return package(
        model,
        out,
        PackageRequest(
            name=args.name,
            version=args.version,
            format=args.format,
            weights=args.weights,
            signature=signature,
            example=None if args.example is None else load_npz(args.example),
            output_names=args.output_names.split(",") if args.output_names else None,
            dynamic_axes=_dynamic(args.dynamic),
            max_batch_size=args.max_batch_size,
            compression=CompressionOptions(
                int8=args.int8 or args.quantize == "int8",
                sparsity=args.sparsity,
                fp16=args.fp16,
                distill=distill,
                calibration=None if args.calibration is None else load_npz(args.calibration),
            ),
            validation=None if args.validation is None else load_npz(args.validation),
            validation_samples=args.validation_samples,
            serving=ServingOptions(
                device=args.device,
                instances=args.instances,
                max_queue_delay_us=args.max_queue_delay_us,
                torch_threads=args.torch_threads,
            ),
            uri=getattr(args, "uri", None),  # `conch publish` has none: push sets it
            baseline_version=args.baseline_version,
            search_path=args.search_path,
        ),
        reporter=RichReporter(),
    )


def _package(args: argparse.Namespace) -> int:
    result = package_from_args(args.model, args.out, args)
    table = Table(title=f"{args.name} {args.version} ({args.format})", show_header=False)
    table.add_row("package", str(result.directory))
    table.add_row("artifact", f"{result.artifact} ({result.size_bytes} bytes)")
    table.add_row("sha256", result.sha256)
    table.add_row("uri", result.uri)
    table.add_row("ModelVersion", str(result.modelversion))
    report = result.compression.to_dict()
    for key, value in report.items():
        if key not in ("outputErrors", "warnings"):
            table.add_row(key, str(value))
    for output, errors in report["outputErrors"].items():
        table.add_row(f"error vs original: {output}", f"max {errors['maxAbsError']:.3g}")
    for warning in result.compression.warnings:
        table.add_row("[yellow]warning[/yellow]", warning)
    Console().print(table)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from conch_runtime.progress import RichReporter
    from conch_runtime.validate import validate

    report = validate(args.package, atol=args.atol, rtol=args.rtol, reporter=RichReporter())
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
        return 0 if report.passed else 1
    verdict = "[green]PASS[/green]" if report.passed else "[red]FAIL[/red]"
    table = Table(title=f"validate {report.model} ({report.format}): {verdict}", show_header=False)
    table.add_row("engine", report.engine)
    table.add_row("tolerance", f"|served - reference| <= {report.atol:g} + {report.rtol:g} * |ref|")
    table.add_row("samples", str(report.samples))
    table.add_row("batch sizes", ", ".join(str(size) for size in report.batch_sizes))
    table.add_row("max abs error", f"{report.max_abs_error:.3g} (worst over the batch sizes)")
    for check in report.outputs:
        extra = ""
        if check.worst_batch_size is not None:
            extra = f" at batch {check.worst_batch_size}"
        if check.max_abs_error_vs_original is not None:
            extra += f"; vs original {check.max_abs_error_vs_original:.3g}"
        state = "ok" if check.passed else "MISMATCH"
        table.add_row(f"  {check.name}", f"{state}: max {check.max_abs_error:.3g}{extra}")
    if report.latency_ms_p50 is not None and report.latency_ms_p99 is not None:
        table.add_row(
            "latency (1 sample)",
            f"p50 {report.latency_ms_p50:.2f} ms, p99 {report.latency_ms_p99:.2f} ms",
        )
    if report.server_startup_seconds is not None:
        table.add_row("server ready in", f"{report.server_startup_seconds:.1f} s")
    for problem in report.problems:
        table.add_row("problem", problem)
    for note in report.notes:
        table.add_row("note", note)
    Console().print(table)
    return 0 if report.passed else 1
