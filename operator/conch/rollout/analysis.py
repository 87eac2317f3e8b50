"""The analysis verdict: the canary's samples against `spec.rollout.analysis`. Pure.

    Passed        every configured check has data and is within its threshold
    Failed        at least one check with data is over its threshold
    Inconclusive  too few requests (below minRequests), or no failure but a check without
                  data (a missing or NaN sample)

Inconclusive is a value, not an exception: it neither advances a rollout nor counts
toward its failure limit. Thin traffic is never judged, in either direction: a 50% error
rate over 4 requests is Inconclusive under minRequests=20, not Failed. The message names
every failed check with its value and threshold, and every check that had no data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from conch.api.modelservice import Analysis, AnalysisResult
from conch.rollout.state import Samples, Verdict

Outcome = Literal["passed", "failed", "missing"]


@dataclass(frozen=True)
class Check:
    """One threshold check of one analysis."""

    name: str
    value: float | None
    limit: float
    outcome: Outcome
    text: str
    """`value vs limit` in words, e.g. `error rate 5.00% > 1.00%`."""


@dataclass(frozen=True)
class AnalysisVerdict:
    verdict: Verdict
    message: str
    checks: tuple[Check, ...] = ()

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.outcome == "failed")


def _known(value: float | None) -> float | None:
    """NaN is Prometheus' "no data" (0/0 with no requests): treat it as missing."""
    return None if value is None or math.isnan(value) else value


def _rate(value: float) -> str:
    return f"{value:.2%}"


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _number(value: float) -> str:
    return f"{value:g}"


def _check(name: str, value: float | None, limit: float, show: Callable[[float], str]) -> Check:
    known = _known(value)
    if known is None:
        return Check(name, None, limit, "missing", f"{name}: no data")
    if known > limit:
        return Check(name, known, limit, "failed", f"{name} {show(known)} > {show(limit)}")
    return Check(name, known, limit, "passed", f"{name} {show(known)} <= {show(limit)}")


def checks(analysis: Analysis, samples: Samples) -> tuple[Check, ...]:
    """Every configured threshold check, in a stable order (built-ins, then custom)."""
    found = [_check("error rate", samples.error_rate, analysis.max_error_rate, _rate)]
    if analysis.max_p99_latency_ms is not None:
        found.append(
            _check("p99 latency", samples.p99_latency_ms, analysis.max_p99_latency_ms, _ms)
        )
    if analysis.max_queue_time_ms is not None:
        found.append(_check("queue time", samples.queue_time_ms, analysis.max_queue_time_ms, _ms))
    for custom in analysis.custom:
        found.append(_check(custom.name, samples.custom.get(custom.name), custom.max, _number))
    return tuple(found)


def evaluate(analysis: Analysis, samples: Samples | None) -> AnalysisVerdict:
    """The verdict of one analysis run (see the module doc for the rules)."""
    if samples is None:
        return AnalysisVerdict("Inconclusive", "inconclusive: no samples")
    requests = _known(samples.requests)
    if analysis.min_requests > 0:
        if requests is None:
            return AnalysisVerdict("Inconclusive", "inconclusive: request count: no data")
        if requests < analysis.min_requests:
            return AnalysisVerdict(
                "Inconclusive",
                f"inconclusive: {requests:g} requests < minRequests {analysis.min_requests}",
            )
    found = checks(analysis, samples)
    failed = [c.text for c in found if c.outcome == "failed"]
    missing = [c.text for c in found if c.outcome == "missing"]
    if failed:
        return AnalysisVerdict("Failed", "failed: " + "; ".join(failed + missing), found)
    if missing:
        return AnalysisVerdict("Inconclusive", "inconclusive: " + "; ".join(missing), found)
    served = "" if requests is None else f"{requests:g} requests, "
    passed = "; ".join(c.text for c in found)
    return AnalysisVerdict("Passed", f"passed: {served}{passed}", found)


def _finite(value: float | None) -> float | None:
    """JSON has no infinity; an infinite sample lives on in the message only."""
    return None if value is None or not math.isfinite(value) else value


def to_result(
    verdict: AnalysisVerdict, samples: Samples | None, now: dt.datetime
) -> AnalysisResult:
    """The verdict as status records it (status.lastAnalysis)."""
    got = samples or Samples()
    return AnalysisResult(
        time=now,
        verdict=verdict.verdict,
        requests=_finite(got.requests),
        error_rate=_finite(got.error_rate),
        p99_latency_ms=_finite(got.p99_latency_ms),
        queue_time_ms=_finite(got.queue_time_ms),
        message=verdict.message,
    )
