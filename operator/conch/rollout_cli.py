"""`conch rollout status|pause|resume|abort|retry|promote NAME`, like `kubectl argo rollouts`.

Runs with the caller's kubeconfig and rights, and writes exactly what a person would
write with kubectl (docs/rollouts.md): pause/resume set spec.rollout.paused; abort, retry
and promote set their one-shot annotation, which the operator removes once acted on. It
never writes status: status is the operator's output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from conch.errors import ApiError, ConchError
from conch.kube import MODEL_SERVICE, Kube
from conch.plan import ABORT_ANNOTATION, PROMOTE_ANNOTATION, RETRY_ANNOTATION
from conch.rollout.state import DEFAULT_STEP_WEIGHTS

__all__ = ["ACTIONS", "add_arguments", "request", "run", "summary"]

err = Console(stderr=True)

ACTIONS = {
    "status": "show the rollout's steps, weights and analyses (--watch: until it settles)",
    "pause": "hold the rollout at its current step (sets spec.rollout.paused)",
    "resume": "continue a paused rollout (clears spec.rollout.paused)",
    "abort": "roll back to the stable version (the serving.conch.dev/abort annotation)",
    "retry": "start a rolled-back rollout again, or resume a stalled one (.../retry)",
    "promote": "skip the remaining steps and promote the canary (.../promote)",
}
SETTLED = frozenset({"Stable", "RolledBack", "Paused"})
"""Phases `status --watch` stops at: nothing more happens without a person."""
EXIT_TIMEOUT = 2


def request(action: str) -> dict[str, Any]:
    """The JSON merge patch that `action` is (what `kubectl patch --type merge` would send)."""
    if action in ("pause", "resume"):
        return {"spec": {"rollout": {"paused": action == "pause"}}}
    annotation = {
        "abort": ABORT_ANNOTATION,
        "retry": RETRY_ANNOTATION,
        "promote": PROMOTE_ANNOTATION,
    }[action]
    return {"metadata": {"annotations": {annotation: "1"}}}


@dataclass(frozen=True)
class Summary:
    """What `status` shows of one ModelService, read from its spec and status only."""

    name: str
    target: str
    phase: str
    current: bool
    """Whether status reflects the latest spec (observedGeneration caught up)."""
    paused: bool
    step: int | None
    weights: tuple[int, ...]
    stable: dict[str, Any]
    canary: dict[str, Any]
    analysis: dict[str, Any]
    conditions: tuple[tuple[str, str, str, str], ...]
    pending: tuple[str, ...]
    """Request annotations not yet acted on by the operator."""
    history: tuple[dict[str, Any], ...]

    @property
    def settled(self) -> bool:
        """Nothing will change without a person: status is current and the phase is final."""
        finished = self.phase != "Stable" or self.stable.get("version") == self.target
        return self.current and not self.pending and self.phase in SETTLED and finished


def summary(service: dict[str, Any]) -> Summary:
    """Reduce a ModelService manifest to what the rollout view shows. Pure."""
    meta, spec, status = service["metadata"], service.get("spec", {}), service.get("status", {})
    rollout = spec.get("rollout") or {}
    steps = rollout.get("steps") or [{"weight": w} for w in DEFAULT_STEP_WEIGHTS]
    annotations = meta.get("annotations") or {}
    requests = (ABORT_ANNOTATION, RETRY_ANNOTATION, PROMOTE_ANNOTATION)
    return Summary(
        name=meta["name"],
        target=spec.get("modelVersion", ""),
        phase=status.get("phase") or "Pending",
        current=status.get("observedGeneration", 0) >= meta.get("generation", 0),
        paused=bool(rollout.get("paused")),
        step=status.get("step"),
        weights=tuple(int(s.get("weight", 0)) for s in steps),
        stable=status.get("stable") or {},
        canary=status.get("canary") or {},
        analysis=status.get("lastAnalysis") or {},
        conditions=tuple(
            (c["type"], c.get("status", ""), c.get("reason", ""), c.get("message", ""))
            for c in status.get("conditions", [])
            if c.get("type") in ("Ready", "Progressing", "Degraded")
        ),
        pending=tuple(a.rsplit("/", 1)[1] for a in requests if a in annotations),
        history=tuple(status.get("rolloutHistory", [])[-3:]),
    )


def _step_rows(s: Summary) -> Table:
    table = Table(title="steps", title_justify="left")
    for column in ("step", "canary weight", "state"):
        table.add_column(column)
    in_rollout = s.phase in ("Progressing", "Paused") and s.step is not None
    for index, weight in enumerate(s.weights):
        state = ""
        if in_rollout and s.step is not None:
            state = "done" if index < s.step else ("current" if index == s.step else "")
        elif s.phase in ("Promoting", "Stable") and s.canary == {} and s.history:
            state = "done" if s.history[-1].get("result") == "Promoted" else ""
        table.add_row(f"{index + 1}/{len(s.weights)}", f"{weight}%", state)
    return table


def _versions(s: Summary) -> Table:
    table = Table(title="versions", title_justify="left")
    for column in ("role", "modelversion", "weight", "ready/replicas"):
        table.add_column(column)
    for role, v in (("stable", s.stable), ("canary", s.canary)):
        if v:
            ready = f"{v.get('readyReplicas', 0)}/{v.get('replicas', 0)}"
            table.add_row(role, v.get("version", ""), f"{v.get('weight', 0)}%", ready)
    return table


def render(s: Summary) -> Group:
    """The rollout view: header, steps, versions, last analysis, conditions, history."""
    step = "" if s.step is None else f"  step {s.step + 1}/{len(s.weights)}"
    flags = ("  (spec.rollout.paused)" if s.paused else "") + (
        "" if s.current else "  (status not yet current)"
    )
    header = Text(f"{s.name}: {s.phase}{step}  target {s.target}{flags}", style="bold")
    parts: list[Any] = [header, _step_rows(s), _versions(s)]
    if s.analysis:
        a = s.analysis
        figures = ", ".join(
            f"{key} {a[key]:.4g}"
            for key in ("requests", "errorRate", "p99LatencyMs", "queueTimeMs")
            if a.get(key) is not None
        )
        parts.append(Text(f"last analysis: {a.get('verdict')} at {a.get('time')} {figures}"))
    if s.pending:
        parts.append(Text(f"requested, not yet acted on: {', '.join(s.pending)}"))
    for type_, value, reason, message in s.conditions:
        parts.append(Text(f"{type_}={value} {reason}: {message}"))
    for record in s.history:
        parts.append(
            Text(
                f"history: {record.get('fromVersion')} -> {record.get('toVersion')} "
                f"{record.get('result')} {record.get('reason', '')}"
            )
        )
    return Group(*parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=list(ACTIONS), help="; ".join(ACTIONS.values()))
    parser.add_argument("name", help="the ModelService")
    parser.add_argument("--namespace", "-n", help="default: the kubeconfig context's")
    parser.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="status: follow until Stable, RolledBack or Paused",
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="--watch: give up after this many seconds"
    )
    parser.add_argument("--interval", type=float, default=1, help="--watch: seconds between looks")


def _watch(kube: Kube, namespace: str, args: argparse.Namespace) -> int:
    """Follow until settled (0, or 1 for RolledBack) or --timeout (2). A terminal gets a
    live view; a pipe gets each view that differs from the one before."""
    out = Console()
    if not out.is_terminal:
        return _follow(kube, namespace, args, out.print)
    with Live(console=out, auto_refresh=False) as live:
        return _follow(kube, namespace, args, lambda view: live.update(view, refresh=True))


def _follow(
    kube: Kube, namespace: str, args: argparse.Namespace, show: Callable[[Group], None]
) -> int:
    deadline = time.monotonic() + args.timeout
    last: Summary | None = None
    while True:
        s = _read(kube, namespace, args.name)
        if s != last:
            show(render(s))
            last = s
        if s.settled:
            return 1 if s.phase == "RolledBack" else 0
        if time.monotonic() >= deadline:
            err.print(f"[yellow]timed out after {args.timeout:g}s in phase {s.phase}[/]")
            return EXIT_TIMEOUT
        time.sleep(args.interval)


def _read(kube: Kube, namespace: str, name: str) -> Summary:
    service = kube.get(MODEL_SERVICE, namespace, name)
    if service is None:
        raise ApiError(f"modelservice {namespace}/{name} not found", 404)
    return summary(service)


def run(args: argparse.Namespace) -> int:
    from conch.kubeclient import cli_rest, current_namespace

    kube = Kube(cli_rest())
    namespace = args.namespace or current_namespace()
    try:
        if args.action == "status":
            if args.watch:
                return _watch(kube, namespace, args)
            Console().print(render(_read(kube, namespace, args.name)))
            return 0
        before = _read(kube, namespace, args.name)
        kube.patch(MODEL_SERVICE, namespace, args.name, request(args.action))
    except ConchError as error:
        err.print(f"[red]{error.message}[/]")
        return 1
    if args.action == "resume" and before.phase == "Paused" and not before.paused:
        err.print("a stalled rollout resumes on `conch rollout retry`, not on resume")
    stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
    err.print(f"{args.action} requested for {namespace}/{args.name} at {stamp}")
    return 0
