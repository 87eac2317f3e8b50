"""The analysis verdict as a table, and its promises over random samples."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conch.api.modelservice import Analysis
from conch.rollout.analysis import evaluate, to_result
from conch.rollout.state import Samples

STRICT = Analysis(
    max_error_rate=0.01,
    max_p99_latency_ms=250,
    max_queue_time_ms=20,
    min_requests=20,
    custom=[{"name": "gpu_mem", "query": "q", "max": 0.9}],
)
DEFAULT = Analysis()
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)

ALL_GOOD = Samples(
    requests=500, error_rate=0.001, p99_latency_ms=120, queue_time_ms=2, custom={"gpu_mem": 0.5}
)

CASES = [
    # (case, analysis, samples, verdict, words the message must contain)
    ("all within", STRICT, ALL_GOOD, "Passed", ["passed", "500 requests"]),
    (
        "default analysis, error rate only",
        DEFAULT,
        Samples(requests=20, error_rate=0),
        "Passed",
        [],
    ),
    (
        "error rate over",
        STRICT,
        Samples(**{**ALL_GOOD.__dict__, "error_rate": 0.05}),
        "Failed",
        ["error rate 5.00% > 1.00%"],
    ),
    (
        "every failure is named",
        STRICT,
        Samples(
            requests=500,
            error_rate=0.5,
            p99_latency_ms=900,
            queue_time_ms=40,
            custom={"gpu_mem": 0.99},
        ),
        "Failed",
        [
            "error rate 50.00% > 1.00%",
            "p99 latency 900.0 ms > 250.0 ms",
            "queue time 40.0 ms > 20.0 ms",
            "gpu_mem 0.99 > 0.9",
        ],
    ),
    (
        "a failure with another check missing is still a failure",
        STRICT,
        Samples(requests=500, error_rate=0.5),
        "Failed",
        ["error rate 50.00% > 1.00%", "p99 latency: no data"],
    ),
    (
        "below minRequests is inconclusive, even with errors",
        STRICT,
        Samples(requests=4, error_rate=0.5),
        "Inconclusive",
        ["4 requests < minRequests 20"],
    ),
    (
        "no request count is inconclusive",
        STRICT,
        Samples(error_rate=0.0),
        "Inconclusive",
        ["request count: no data"],
    ),
    (
        "a missing metric is inconclusive",
        STRICT,
        Samples(**{**ALL_GOOD.__dict__, "p99_latency_ms": None}),
        "Inconclusive",
        ["p99 latency: no data"],
    ),
    (
        "NaN (0/0 from Prometheus) is no data",
        STRICT,
        Samples(**{**ALL_GOOD.__dict__, "error_rate": math.nan}),
        "Inconclusive",
        ["error rate: no data"],
    ),
    (
        "a missing custom check is inconclusive",
        STRICT,
        Samples(**{**ALL_GOOD.__dict__, "custom": {}}),
        "Inconclusive",
        ["gpu_mem: no data"],
    ),
    ("no samples at all", STRICT, None, "Inconclusive", ["no samples"]),
    (
        "minRequests 0 judges without a request count",
        Analysis(min_requests=0),
        Samples(error_rate=0.0),
        "Passed",
        [],
    ),
    (
        "infinite p99 (above the top bucket) fails",
        STRICT,
        Samples(**{**ALL_GOOD.__dict__, "p99_latency_ms": math.inf}),
        "Failed",
        ["p99 latency inf ms > 250.0 ms"],
    ),
    (
        "exactly at the threshold passes",
        STRICT,
        Samples(**{**ALL_GOOD.__dict__, "error_rate": 0.01}),
        "Passed",
        [],
    ),
]


@pytest.mark.parametrize(
    ("analysis", "samples", "verdict", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_verdict(
    analysis: Analysis, samples: Samples | None, verdict: str, words: list[str]
) -> None:
    result = evaluate(analysis, samples)
    assert result.verdict == verdict
    for word in words:
        assert word in result.message


def test_result_records_finite_samples_only() -> None:
    samples = Samples(requests=500, error_rate=0.5, p99_latency_ms=math.inf)
    result = to_result(evaluate(STRICT, samples), samples, NOW)
    assert (result.verdict, result.time, result.error_rate) == ("Failed", NOW, 0.5)
    assert result.p99_latency_ms is None
    assert "inf ms" in result.message


maybe = st.one_of(st.none(), st.floats(min_value=0, max_value=2000), st.just(math.nan))


@st.composite
def samples(draw: st.DrawFn) -> Samples:
    return Samples(
        requests=draw(maybe),
        error_rate=draw(st.one_of(st.none(), st.floats(0, 1), st.just(math.nan))),
        p99_latency_ms=draw(maybe),
        queue_time_ms=draw(maybe),
        custom={"gpu_mem": v} if (v := draw(st.one_of(st.none(), st.floats(0, 2)))) else {},
    )


@settings(max_examples=200, deadline=None)
@given(samples())
def test_thin_or_missing_data_is_never_passed_and_never_failed(sample: Samples) -> None:
    result = evaluate(STRICT, sample)
    thin = sample.requests is None or math.isnan(sample.requests) or sample.requests < 20
    if thin:
        assert result.verdict == "Inconclusive"
    if result.verdict == "Passed":
        assert all(c.outcome == "passed" for c in result.checks)
        assert len(result.checks) == 4
    if result.verdict == "Failed":
        assert result.failed
        for check in result.checks:
            if check.outcome == "failed":
                assert check.name in result.message
