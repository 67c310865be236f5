"""tinyllm_instrument.metrics: the guide's families, the cardinality guard, the server."""

from __future__ import annotations

import enum
import errno
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tinyllm_instrument import metrics as metrics_mod
from tinyllm_instrument.metrics import (
    GRAPH_EXECUTION_BUCKETS,
    MAX_LABEL_VALUE_LENGTH,
    NODE_EXECUTION_BUCKETS,
    QUEUE_WAIT_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TIME_TO_FIRST_ITEM_BUCKETS,
    GuardedMetric,
    MetricLabels,
    MetricsCollector,
    get_metrics_collector,
    reset_metrics_collector,
    set_metrics_collector,
    start_metrics_server,
)

# The exposed families: name -> (prometheus type, label names in declaration order, attribute).
FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "tinyllm_requests_total": ("counter", ("model", "graph", "request_type"), "requests_total"),
    "tinyllm_request_latency_seconds": ("histogram", ("model", "graph"), "request_latency"),
    "tinyllm_active_requests": ("gauge", ("model", "graph"), "active_requests"),
    "tinyllm_tokens_input_total": ("counter", ("model", "graph"), "tokens_input"),
    "tinyllm_tokens_output_total": ("counter", ("model", "graph"), "tokens_output"),
    "tinyllm_errors_total": ("counter", ("error_type", "model", "graph"), "errors_total"),
    "tinyllm_node_errors_total": ("counter", ("node", "graph", "error_type"), "node_errors"),
    "tinyllm_node_execution_duration_seconds": (
        "histogram",
        ("node", "graph"),
        "node_execution_duration",
    ),
    "tinyllm_node_executions_total": ("counter", ("node", "graph"), "node_executions"),
    "tinyllm_node_time_to_first_item_seconds": (
        "histogram",
        ("node", "graph"),
        "node_time_to_first_item",
    ),
    "tinyllm_graph_execution_duration_seconds": (
        "histogram",
        ("graph",),
        "graph_execution_duration",
    ),
    "tinyllm_cache_hits_total": ("counter", ("cache_type",), "cache_hits"),
    "tinyllm_cache_misses_total": ("counter", ("cache_type",), "cache_misses"),
    "tinyllm_queue_size": ("gauge", ("priority",), "queue_size"),
    "tinyllm_queue_wait_time_seconds": ("histogram", ("priority",), "queue_wait_time"),
    "tinyllm_events_total": ("counter", ("category", "severity"), "events_total"),
    "tinyllm_instrumentation_errors_total": ("counter", ("stage",), "instrumentation_errors"),
    "tinyllm_spans_dropped_total": ("counter", ("reason",), "spans_dropped"),
    "tinyllm_spans_exported_total": ("counter", (), "spans_exported"),
    "tinyllm_log_lines_dropped_total": ("counter", ("reason",), "log_lines_dropped"),
    "tinyllm_cost_usd_total": ("counter", ("model", "graph"), "cost_usd"),
}

GUIDE_FAMILIES = {
    "tinyllm_requests_total",
    "tinyllm_request_latency_seconds",
    "tinyllm_active_requests",
    "tinyllm_tokens_input_total",
    "tinyllm_tokens_output_total",
    "tinyllm_errors_total",
    "tinyllm_node_errors_total",
    "tinyllm_node_execution_duration_seconds",
    "tinyllm_graph_execution_duration_seconds",
    "tinyllm_cache_hits_total",
    "tinyllm_cache_misses_total",
    "tinyllm_queue_size",
    "tinyllm_queue_wait_time_seconds",
}

EXPECTED_BUCKETS = {
    "tinyllm_request_latency_seconds": REQUEST_LATENCY_BUCKETS,
    "tinyllm_node_execution_duration_seconds": NODE_EXECUTION_BUCKETS,
    "tinyllm_graph_execution_duration_seconds": GRAPH_EXECUTION_BUCKETS,
    "tinyllm_queue_wait_time_seconds": QUEUE_WAIT_BUCKETS,
    "tinyllm_node_time_to_first_item_seconds": TIME_TO_FIRST_ITEM_BUCKETS,
}


def _record(guarded: GuardedMetric[Any], *values: object, amount: float = 1.0) -> None:
    """Record `amount` into whatever kind of metric `guarded` is."""
    child = guarded.labels(*values)
    if hasattr(child, "observe"):
        child.observe(amount)
    else:
        child.inc(amount)


def _sample_total(collector: MetricsCollector, name: str) -> float:
    """Sum of a family's counting samples: _total, the gauge value, or a histogram's _count."""
    kind = FAMILIES[name][0]
    wanted = {"counter": name, "gauge": name, "histogram": name + "_count"}[kind]
    text = generate_latest(collector.registry).decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == wanted
    )


def _requests(c: MetricsCollector, model: str, graph: str, request_type: str) -> float | None:
    labels = {"model": model, "graph": graph, "request_type": request_type}
    return c.registry.get_sample_value("tinyllm_requests_total", labels)


def _record_everything(c: MetricsCollector) -> None:
    c.increment_request_count("gpt-x", "qa")
    with c.track_request_latency("gpt-x", "qa"):
        pass
    c.record_tokens(10, 5, "gpt-x", "qa")
    c.record_cost(0.0125, "gpt-x", "qa")
    c.increment_error_count("timeout", "gpt-x", "qa")
    with c.track_node_execution("router", "qa"):
        pass
    c.increment_node_error_count("router", "qa", "ValueError")
    c.node_time_to_first_item.labels("router", "qa").observe(0.2)
    with c.track_graph_execution("qa"):
        pass
    c.increment_cache_hit("memory")
    c.increment_cache_miss("memory")
    c.update_queue_size(3, "high")
    c.record_queue_wait_time(0.5, "high")
    c.events_total.labels("execution", "info").inc()
    c.instrumentation_errors.labels("span_start").inc()
    c.spans_dropped.labels("queue_full").inc()
    c.spans_exported.labels().inc()
    c.log_lines_dropped.labels("disk_full").inc()


# --- the guide's snippets, with tinyllm renamed tinyllm_instrument -------------------------------


def test_guide_cardinality_controls_snippet_runs_and_prints_the_documented_stats(capsys):
    from tinyllm_instrument.metrics import MetricsCollector

    # Create collector with cardinality limit
    collector = MetricsCollector(max_cardinality=1000)

    # Get cardinality stats
    stats = collector.get_cardinality_stats()
    print(stats)

    assert set(stats) == {"metrics", "total_label_combinations", "max_cardinality"}
    assert stats["max_cardinality"] == 1000
    assert stats["total_label_combinations"] == 0
    assert set(stats["metrics"]) == set(FAMILIES)
    assert all(info == {"cardinality": 0, "dropped": 0} for info in stats["metrics"].values())
    assert "'max_cardinality': 1000" in capsys.readouterr().out


def test_guide_best_practice_monitor_cardinality_loop_flags_the_busy_metric():
    warnings: list[dict[str, Any]] = []

    class _Logger:  # stands in for get_logger(); the logging pillar is tested elsewhere
        def warning(self, event: str, **kw: Any) -> None:
            warnings.append({"event": event, **kw})

    logger = _Logger()
    for i in range(501):
        get_metrics_collector().increment_cache_hit(f"cache-{i}")

    from tinyllm_instrument.metrics import get_metrics_collector as guide_get

    collector = guide_get()
    stats = collector.get_cardinality_stats()

    # Alert if any metric has high cardinality
    for metric, info in stats["metrics"].items():
        if info["cardinality"] > 500:
            logger.warning(
                "high_metric_cardinality", metric=metric, cardinality=info["cardinality"]
            )

    assert warnings == [
        {
            "event": "high_metric_cardinality",
            "metric": "tinyllm_cache_hits_total",
            "cardinality": 501,
        }
    ]


def test_guide_troubleshooting_raised_limit_holds_more_series_before_folding():
    collector = MetricsCollector(max_cardinality=2000)
    for i in range(1500):
        collector.increment_cache_miss(f"t{i}")
    stats = collector.get_cardinality_stats()
    assert stats["max_cardinality"] == 2000
    assert stats["metrics"]["tinyllm_cache_misses_total"] == {"cardinality": 1500, "dropped": 0}


# --- families, labels, buckets in the exposition -------------------------------------------------


def test_exposition_has_exactly_the_documented_families_types_and_label_names():
    c = MetricsCollector()
    _record_everything(c)
    text = generate_latest(c.registry).decode()

    types = {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")
    }
    declared = {name: t for name, t in types.items() if not name.endswith("_created")}
    assert declared == {name: spec[0] for name, spec in FAMILIES.items()}
    assert GUIDE_FAMILIES <= set(declared)

    seen_labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):
            continue
        for sample in family.samples:
            base = sample.name
            for suffix in ("_bucket", "_count", "_sum", "_created"):
                if base.endswith(suffix) and base[: -len(suffix)] in FAMILIES:
                    base = base[: -len(suffix)]
            seen_labels.setdefault(base, set()).update(set(sample.labels) - {"le"})
    assert seen_labels == {name: set(spec[1]) for name, spec in FAMILIES.items()}


def test_attributes_hold_guarded_metrics_with_full_names_and_plain_str_label_names():
    c = MetricsCollector()
    for name, (_, labels, attribute) in FAMILIES.items():
        guarded = getattr(c, attribute)
        assert isinstance(guarded, GuardedMetric)
        assert guarded.name == name
        assert guarded.label_names == labels
        assert all(type(label) is str for label in guarded.label_names)
        assert guarded.metric is c.metrics[name].metric
    assert set(c.metrics) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(EXPECTED_BUCKETS))
def test_histogram_bucket_bounds_are_the_documented_ones(family):
    c = MetricsCollector()
    labels = FAMILIES[family][1]
    _record(getattr(c, FAMILIES[family][2]), *labels, amount=0.3)
    parsed = {
        f.name: f for f in text_string_to_metric_families(generate_latest(c.registry).decode())
    }
    bounds = [float(s.labels["le"]) for s in parsed[family].samples if s.name.endswith("_bucket")]
    assert bounds == [*EXPECTED_BUCKETS[family], math.inf]


def test_bucket_ranges_match_the_issue():
    assert (REQUEST_LATENCY_BUCKETS[0], REQUEST_LATENCY_BUCKETS[-1]) == (0.005, 60.0)
    assert (NODE_EXECUTION_BUCKETS[0], NODE_EXECUTION_BUCKETS[-1]) == (0.005, 60.0)
    assert (GRAPH_EXECUTION_BUCKETS[0], GRAPH_EXECUTION_BUCKETS[-1]) == (0.05, 300.0)
    assert (QUEUE_WAIT_BUCKETS[0], QUEUE_WAIT_BUCKETS[-1]) == (0.001, 60.0)
    assert (TIME_TO_FIRST_ITEM_BUCKETS[0], TIME_TO_FIRST_ITEM_BUCKETS[-1]) == (0.001, 60.0)
    for buckets in EXPECTED_BUCKETS.values():
        assert list(buckets) == sorted(set(buckets))


def test_promtool_accepts_the_exposition():
    promtool = shutil.which("promtool") or (
        "/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None
    )
    if promtool is None:
        pytest.fail("promtool not installed: install Debian's 'prometheus' package (.ci/run does)")
    c = MetricsCollector(max_cardinality=2)
    _record_everything(c)
    for i in range(5):
        c.increment_request_count(f"m{i}", "qa")
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(c.registry),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


# --- the recording API ---------------------------------------------------------------------------


def test_increment_request_count_defaults_request_type_to_generate():
    c = MetricsCollector()
    c.increment_request_count("gpt-x", "qa")
    c.increment_request_count(model="gpt-x", graph="qa", request_type="stream")
    get = c.registry.get_sample_value
    labels = {"model": "gpt-x", "graph": "qa"}
    assert get("tinyllm_requests_total", {**labels, "request_type": "generate"}) == 1.0
    assert get("tinyllm_requests_total", {**labels, "request_type": "stream"}) == 1.0


def test_track_request_latency_counts_active_requests_while_inside():
    c = MetricsCollector()
    get = c.registry.get_sample_value
    labels = {"model": "gpt-x", "graph": "qa"}
    with c.track_request_latency("gpt-x", "qa") as timer:
        assert get("tinyllm_active_requests", labels) == 1.0
        with c.track_request_latency("gpt-x", "qa"):
            assert get("tinyllm_active_requests", labels) == 2.0
    assert get("tinyllm_active_requests", labels) == 0.0
    assert get("tinyllm_request_latency_seconds_count", labels) == 2.0
    assert timer.duration is not None and timer.duration >= 0.0
    assert get("tinyllm_request_latency_seconds_sum", labels) >= timer.duration


def test_track_request_latency_reraises_the_same_exception_and_decrements_active():
    c = MetricsCollector()
    boom = RuntimeError("boom")
    with pytest.raises(RuntimeError) as info:
        with c.track_request_latency("gpt-x", "qa"):
            raise boom
    assert info.value is boom
    labels = {"model": "gpt-x", "graph": "qa"}
    assert c.registry.get_sample_value("tinyllm_active_requests", labels) == 0.0
    assert c.registry.get_sample_value("tinyllm_request_latency_seconds_count", labels) == 1.0


def test_track_node_execution_times_and_counts_runs_including_failures():
    c = MetricsCollector()
    with c.track_node_execution("router", "qa"):
        pass
    with pytest.raises(KeyError):
        with c.track_node_execution("router", "qa"):
            raise KeyError("x")
    labels = {"node": "router", "graph": "qa"}
    get = c.registry.get_sample_value
    assert get("tinyllm_node_executions_total", labels) == 2.0
    assert get("tinyllm_node_execution_duration_seconds_count", labels) == 2.0


def test_track_graph_execution_observes_one_duration():
    c = MetricsCollector()
    with c.track_graph_execution("qa") as timer:
        pass
    get = c.registry.get_sample_value
    assert get("tinyllm_graph_execution_duration_seconds_count", {"graph": "qa"}) == 1.0
    assert get("tinyllm_graph_execution_duration_seconds_sum", {"graph": "qa"}) == timer.duration


def test_record_tokens_adds_both_counters():
    c = MetricsCollector()
    c.record_tokens(120, 45, model="gpt-x", graph="qa")
    c.record_tokens(input_tokens=1, output_tokens=0, model="gpt-x", graph="qa")
    get = c.registry.get_sample_value
    labels = {"model": "gpt-x", "graph": "qa"}
    assert get("tinyllm_tokens_input_total", labels) == 121.0
    assert get("tinyllm_tokens_output_total", labels) == 45.0


@pytest.mark.parametrize("bad", [(-1, 5), (5, -1), (float("nan"), 1)])
def test_record_tokens_refuses_negative_or_nan_counts_and_records_nothing(bad):
    c = MetricsCollector()
    with pytest.raises(ValueError, match="must be >= 0"):
        c.record_tokens(bad[0], bad[1], "gpt-x", "qa")
    assert c.get_cardinality_stats()["total_label_combinations"] == 0


def test_record_tokens_refuses_non_numbers():
    with pytest.raises(TypeError, match="input_tokens must be a number"):
        MetricsCollector().record_tokens("12", 1, "gpt-x", "qa")  # type: ignore[arg-type]


def test_error_counters_accept_strings_exceptions_and_exception_classes():
    c = MetricsCollector()
    c.increment_error_count("timeout", "gpt-x", "qa")
    c.increment_error_count(TimeoutError, "gpt-x", "qa")
    c.increment_error_count(TimeoutError("slow"), "gpt-x", "qa")
    c.increment_node_error_count("router", "qa", ValueError("bad"))
    get = c.registry.get_sample_value
    labels = {"model": "gpt-x", "graph": "qa"}
    assert get("tinyllm_errors_total", {**labels, "error_type": "timeout"}) == 1.0
    assert get("tinyllm_errors_total", {**labels, "error_type": "TimeoutError"}) == 2.0
    node = {"node": "router", "graph": "qa", "error_type": "ValueError"}
    assert get("tinyllm_node_errors_total", node) == 1.0


def test_cache_and_queue_recording():
    c = MetricsCollector()
    c.increment_cache_hit("memory")
    c.increment_cache_hit("memory")
    c.increment_cache_miss("redis")
    c.update_queue_size(7, "high")
    c.update_queue_size(3, "high")
    c.record_queue_wait_time(0.002, "high")
    get = c.registry.get_sample_value
    assert get("tinyllm_cache_hits_total", {"cache_type": "memory"}) == 2.0
    assert get("tinyllm_cache_misses_total", {"cache_type": "redis"}) == 1.0
    assert get("tinyllm_queue_size", {"priority": "high"}) == 3.0
    assert get("tinyllm_queue_wait_time_seconds_bucket", {"priority": "high", "le": "0.001"}) == 0
    assert get("tinyllm_queue_wait_time_seconds_bucket", {"priority": "high", "le": "0.005"}) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.update_queue_size(-1, "high"),
        lambda c: c.record_queue_wait_time(-0.1, "high"),
        lambda c: c.record_queue_wait_time(float("nan"), "high"),
    ],
    ids=["negative-size", "negative-wait", "nan-wait"],
)
def test_queue_recording_refuses_negative_amounts(call):
    c = MetricsCollector()
    with pytest.raises(ValueError, match="must be >= 0"):
        call(c)
    assert c.get_cardinality_stats()["total_label_combinations"] == 0


def test_get_metrics_summary_reports_totals_counts_and_series():
    c = MetricsCollector(max_cardinality=1)
    c.increment_request_count("a", "qa")
    c.increment_request_count("b", "qa")
    c.record_tokens(10, 4, "a", "qa")
    c.record_queue_wait_time(0.5, "high")
    c.record_queue_wait_time(1.5, "high")
    c.update_queue_size(2, "high")
    summary = c.get_metrics_summary()
    assert summary["max_cardinality"] == 1
    families = summary["metrics"]
    assert set(families) == set(FAMILIES)
    assert families["tinyllm_requests_total"] == {
        "type": "counter",
        "total": 2.0,
        "series": 2,
        "dropped": 1,
    }
    assert families["tinyllm_tokens_input_total"]["total"] == 10.0
    assert families["tinyllm_queue_wait_time_seconds"] == {
        "type": "histogram",
        "count": 2,
        "sum": 2.0,
        "series": 1,
        "dropped": 0,
    }
    assert families["tinyllm_queue_size"]["total"] == 2.0
    assert families["tinyllm_cache_hits_total"]["series"] == 0
    assert summary["total_series"] == 2 + 1 + 1 + 1 + 1  # requests, tokens x2, queue x2


# --- labels: normalisation and the hot path ------------------------------------------------------


class _Color(str, enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 1


def test_label_values_are_normalised():
    c = MetricsCollector()
    long = "x" * (MAX_LABEL_VALUE_LENGTH + 50)
    for value in (_Color.RED, None, 1, True, 1.0, _Level.HIGH, long, "plain"):
        c.increment_cache_hit(value)
    get = c.registry.get_sample_value
    assert get("tinyllm_cache_hits_total", {"cache_type": "red"}) == 1.0
    assert get("tinyllm_cache_hits_total", {"cache_type": "none"}) == 1.0
    # 1 == True == 1.0 == _Level.HIGH in Python, yet each renders its own way: a cache keyed on
    # raw values must not hand one the other's series.
    assert get("tinyllm_cache_hits_total", {"cache_type": "1"}) == 2.0  # 1 and _Level.HIGH
    assert get("tinyllm_cache_hits_total", {"cache_type": "True"}) == 1.0
    assert get("tinyllm_cache_hits_total", {"cache_type": "1.0"}) == 1.0
    assert get("tinyllm_cache_hits_total", {"cache_type": "x" * MAX_LABEL_VALUE_LENGTH}) == 1.0
    assert get("tinyllm_cache_hits_total", {"cache_type": "plain"}) == 1.0


def test_numeric_label_values_never_share_a_series_whatever_the_order():
    c = MetricsCollector()
    for value in (True, 1, 1.0, True, 1):
        c.increment_cache_miss(value)
    get = c.registry.get_sample_value
    assert get("tinyllm_cache_misses_total", {"cache_type": "True"}) == 2.0
    assert get("tinyllm_cache_misses_total", {"cache_type": "1"}) == 2.0
    assert get("tinyllm_cache_misses_total", {"cache_type": "1.0"}) == 1.0


def test_a_failing_str_does_not_break_recording():
    class Nasty:
        def __str__(self) -> str:
            raise RuntimeError("no")

    c = MetricsCollector()
    c.increment_cache_hit(Nasty())
    value = c.registry.get_sample_value(
        "tinyllm_cache_hits_total", {"cache_type": "<unprintable Nasty>"}
    )
    assert value == 1.0


def test_labels_by_name_equal_labels_by_position():
    c = MetricsCollector()
    by_position = c.requests_total.labels("gpt-x", "qa", "generate")
    by_name = c.requests_total.labels(request_type="generate", graph="qa", model="gpt-x")
    by_enum_name = c.requests_total.labels(
        **{
            MetricLabels.MODEL: "gpt-x",
            MetricLabels.GRAPH: "qa",
            MetricLabels.REQUEST_TYPE: "generate",
        }
    )
    assert by_position is by_name is by_enum_name


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda g: g.labels("only-one"), "takes 3 label values"),
        (lambda g: g.labels("a", "b", "c", "d"), "takes 3 label values"),
        (lambda g: g.labels(model="a", graph="b"), "missing label values"),
        (lambda g: g.labels(model="a", graph="b", request_type="c", user="u"), "no label 'user'"),
        (lambda g: g.labels("a", graph="b"), "not both"),
    ],
)
def test_wrong_label_arguments_raise_a_value_error_naming_the_labels(call, message):
    c = MetricsCollector()
    with pytest.raises(ValueError, match=message):
        call(c.requests_total)


def test_an_admitted_combination_is_served_from_the_raw_tuple_without_the_slow_path(monkeypatch):
    c = MetricsCollector(max_cardinality=1)
    admitted = c.requests_total.labels("gpt-x", "qa", "generate")
    folded = c.requests_total.labels("other-model", "qa", "generate")
    assert folded is not admitted

    def _no_slow_path(self, values, memoize):
        raise AssertionError(f"slow path taken for {values!r}")

    monkeypatch.setattr(GuardedMetric, "_resolve", _no_slow_path)
    assert c.requests_total.labels("gpt-x", "qa", "generate") is admitted
    # A folded combination is also one lookup once seen, and it is not counted as dropped again.
    assert c.requests_total.labels("other-model", "qa", "generate") is folded
    assert c.requests_total.dropped == 1


def test_unhashable_label_values_still_work():
    c = MetricsCollector()
    c.increment_cache_hit(["a", "b"])  # type: ignore[arg-type]
    c.increment_cache_hit(["a", "b"])  # type: ignore[arg-type]
    value = c.registry.get_sample_value("tinyllm_cache_hits_total", {"cache_type": "['a', 'b']"})
    assert value == 2.0


class _HashRaises:
    """A user object whose __hash__ is broken; its str() is a fine label."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __hash__(self) -> int:
        raise RuntimeError("hash refused")

    def __str__(self) -> str:
        return self.text


class _Colour(str, enum.Enum):
    RED = "red"

    def __hash__(self) -> int:  # an Enum label takes the memoised path: it must hold there too
        raise RuntimeError("enum hash refused")


def test_a_label_whose_hash_raises_is_converted_counted_and_reported_once(caplog):
    app = MetricsCollector()
    set_metrics_collector(app)
    app.increment_node_error_count(node=_HashRaises("router"), graph="qa", error_type=ValueError)
    app.increment_node_error_count(node=_HashRaises("router"), graph="qa", error_type=ValueError)
    app.node_errors.labels(_HashRaises("router"), "qa", "ValueError").inc()
    app.increment_cache_hit(_Colour.RED)
    app.increment_cache_hit(_Colour.RED)
    get = app.registry.get_sample_value
    labels = {"node": "router", "graph": "qa", "error_type": "ValueError"}
    assert get("tinyllm_node_errors_total", labels) == 3.0
    assert get("tinyllm_cache_hits_total", {"cache_type": "red"}) == 2.0
    assert get("tinyllm_instrumentation_errors_total", {"stage": "metric_label"}) == 5.0
    reports = [r.getMessage() for r in caplog.records if r.name == "tinyllm_instrument"]
    assert len(reports) == 1 and "RuntimeError: hash refused" in reports[0]


# --- the cardinality guard -----------------------------------------------------------------------


def test_max_cardinality_five_is_accepted():  # defect: the original raised TypeError
    c = MetricsCollector(max_cardinality=5)
    assert c.max_cardinality == 5
    assert c.get_cardinality_stats()["max_cardinality"] == 5
    assert all(g.max_cardinality == 5 for g in c.metrics.values())


def test_an_unlabelled_family_is_one_series_that_counts_everything_and_resets():
    c = MetricsCollector(max_cardinality=1)
    for _ in range(10):
        c.spans_exported.labels().inc(2)
    assert c.spans_exported.labels() is c.spans_exported.metric
    assert c.get_cardinality_stats()["metrics"]["tinyllm_spans_exported_total"] == {
        "cardinality": 1,
        "dropped": 0,
    }
    assert c.registry.get_sample_value("tinyllm_spans_exported_total") == 20.0
    c.reset_metrics()
    assert c.registry.get_sample_value("tinyllm_spans_exported_total") == 0.0
    c.spans_exported.labels().inc()
    c.log_lines_dropped.labels("disk_full").inc()
    assert c.registry.get_sample_value("tinyllm_spans_exported_total") == 1.0
    with pytest.raises(ValueError, match="takes 0 label values"):
        c.spans_exported.labels("extra")


@pytest.mark.parametrize("bad", [0, -1, 1.5, "5", None, True])
def test_invalid_max_cardinality_is_a_value_error_that_says_how_to_fix_it(bad):
    with pytest.raises(ValueError, match=r"max_cardinality.*MetricsCollector\(max_cardinality="):
        MetricsCollector(max_cardinality=bad)


@pytest.mark.parametrize("name", sorted(n for n, spec in FAMILIES.items() if spec[1]))
def test_every_labelled_metric_is_capped_and_keeps_the_sum(name):
    # defect: only requests_total was capped
    c = MetricsCollector(max_cardinality=3)
    guarded = getattr(c, FAMILIES[name][2])
    n_labels = len(FAMILIES[name][1])
    for i in range(10):
        _record(guarded, *[f"v{i}-{j}" for j in range(n_labels)])
    info = c.get_cardinality_stats()["metrics"][name]
    assert info == {"cardinality": 4, "dropped": 7}
    assert _sample_total(c, name) == 10.0
    all_other = {label: "other" for label in FAMILIES[name][1]}
    kind = FAMILIES[name][0]
    sample = name + "_count" if kind == "histogram" else name
    assert c.registry.get_sample_value(sample, all_other) == 7.0


RECORDERS: dict[str, Callable[[MetricsCollector, str], None]] = {
    "tinyllm_requests_total": lambda c, v: c.increment_request_count(v, v, v),
    "tinyllm_request_latency_seconds": lambda c, v: c.track_request_latency(v, v).__exit__(
        None, None, None
    ),
    "tinyllm_tokens_input_total": lambda c, v: c.record_tokens(1, 1, v, v),
    "tinyllm_errors_total": lambda c, v: c.increment_error_count(v, v, v),
    "tinyllm_node_executions_total": lambda c, v: c.track_node_execution(v, v).__exit__(
        None, None, None
    ),
    "tinyllm_node_errors_total": lambda c, v: c.increment_node_error_count(v, v, v),
    "tinyllm_graph_execution_duration_seconds": lambda c, v: c.track_graph_execution(v).__exit__(
        None, None, None
    ),
    "tinyllm_cache_hits_total": lambda c, v: c.increment_cache_hit(v),
    "tinyllm_cache_misses_total": lambda c, v: c.increment_cache_miss(v),
    "tinyllm_queue_wait_time_seconds": lambda c, v: c.record_queue_wait_time(1.0, v),
}


@pytest.mark.parametrize("name", sorted(RECORDERS))
def test_the_recording_api_goes_through_the_guard(name):
    c = MetricsCollector(max_cardinality=2)
    for i in range(6):
        RECORDERS[name](c, f"value-{i}")
    assert c.get_cardinality_stats()["metrics"][name] == {"cardinality": 3, "dropped": 4}
    assert _sample_total(c, name) == 6.0


def test_update_queue_size_past_the_limit_is_folded_too():
    c = MetricsCollector(max_cardinality=1)
    c.update_queue_size(1, "high")
    c.update_queue_size(5, "low")
    get = c.registry.get_sample_value
    assert get("tinyllm_queue_size", {"priority": "high"}) == 1.0
    assert get("tinyllm_queue_size", {"priority": "other"}) == 5.0
    assert get("tinyllm_queue_size", {"priority": "low"}) is None


def test_only_unseen_values_are_folded_when_that_series_exists():
    c = MetricsCollector(max_cardinality=2)
    c.increment_request_count("other", "qa")  # a user value that happens to be "other"
    c.increment_request_count("gpt-x", "qa")
    c.increment_request_count("brand-new", "qa")  # "qa" and "generate" are known: keep them
    assert _requests(c, "other", "qa", "generate") == 2.0
    assert _requests(c, "other", "other", "other") is None
    assert c.get_cardinality_stats()["metrics"]["tinyllm_requests_total"] == {
        "cardinality": 2,
        "dropped": 1,
    }


def test_a_new_combination_of_known_values_goes_to_the_all_other_series():
    c = MetricsCollector(max_cardinality=2)
    c.increment_request_count("a", "g1")
    c.increment_request_count("b", "g2")
    c.increment_request_count("a", "g2")  # every value seen, the combination is new
    assert _requests(c, "a", "g2", "generate") is None
    assert _requests(c, "other", "other", "other") == 1.0


def test_repeated_folded_combination_is_counted_dropped_once():
    c = MetricsCollector(max_cardinality=1)
    c.increment_cache_hit("a")
    for _ in range(5):
        c.increment_cache_hit("b")
        c.increment_cache_hit(7)  # not memoised by raw value; still counted once
    assert c.cache_hits.dropped == 2
    assert c.cache_hits.cardinality == 2
    assert c.registry.get_sample_value("tinyllm_cache_hits_total", {"cache_type": "other"}) == 10.0


def test_guards_are_per_metric():
    c = MetricsCollector(max_cardinality=2)
    for i in range(5):
        c.increment_cache_hit(f"h{i}")
    c.increment_cache_miss("m0")
    c.increment_cache_miss("m1")
    stats = c.get_cardinality_stats()
    assert stats["metrics"]["tinyllm_cache_hits_total"] == {"cardinality": 3, "dropped": 3}
    assert stats["metrics"]["tinyllm_cache_misses_total"] == {"cardinality": 2, "dropped": 0}
    assert stats["total_label_combinations"] == 5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(min_value=1, max_value=6),
    combos=st.lists(
        st.tuples(
            st.one_of(st.text(max_size=3), st.none(), st.integers(-3, 3), st.booleans()),
            st.sampled_from(["qa", "chat", "other", ""]),
        ),
        max_size=60,
    ),
)
def test_property_cardinality_is_bounded_and_no_increment_is_lost(limit, combos):
    c = MetricsCollector(max_cardinality=limit)
    for model, graph in combos:
        c.requests_total.labels(model, graph, "generate").inc()
    assert c.requests_total.cardinality <= limit + 1
    stats = c.get_cardinality_stats()["metrics"]["tinyllm_requests_total"]
    assert stats["cardinality"] <= limit + 1
    assert _sample_total(c, "tinyllm_requests_total") == len(combos)
    series = [
        s
        for f in text_string_to_metric_families(generate_latest(c.registry).decode())
        for s in f.samples
        if s.name == "tinyllm_requests_total"
    ]
    assert len(series) == c.requests_total.cardinality


def test_eight_threads_through_the_guard_give_an_exact_total():
    c = MetricsCollector(max_cardinality=10)
    per_thread = 2000
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            # a mix of shared, per-thread and ever-new values, so admission races with folding
            c.requests_total.labels(f"m{i % 7}", f"g{t}", str(i % 13 == 0 and i)).inc()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _sample_total(c, "tinyllm_requests_total") == 8 * per_thread
    assert c.requests_total.cardinality <= 11


# --- reset, isolation, the process-wide collector ------------------------------------------------


def test_reset_metrics_clears_every_series_and_the_bookkeeping():  # defect: it did nothing
    c = MetricsCollector(max_cardinality=1)
    _record_everything(c)
    c.increment_cache_hit("second")  # folded
    assert c.generation == 0
    c.reset_metrics()
    assert c.generation == 1  # tells holders of prebound children to bind again

    stats = c.get_cardinality_stats()
    assert stats["total_label_combinations"] == 0
    assert all(info == {"cardinality": 0, "dropped": 0} for info in stats["metrics"].values())
    families = list(text_string_to_metric_families(generate_latest(c.registry).decode()))
    # An unlabelled family always shows its one series (at zero, as Prometheus advises); every
    # labelled family shows none.
    unlabelled = {name for name, spec in FAMILIES.items() if not spec[1]}
    own = unlabelled | {name.removesuffix("_total") + "_created" for name in unlabelled}
    leftover = [s for f in families for s in f.samples if s.name not in own]
    assert leftover == []
    assert {s.name: s.value for f in families for s in f.samples if s.name in unlabelled} == {
        name: 0.0 for name in unlabelled
    }

    # The guard starts over: a value never seen before the reset gets its own series again.
    c.increment_cache_hit("fresh")
    assert c.registry.get_sample_value("tinyllm_cache_hits_total", {"cache_type": "fresh"}) == 1.0
    assert c.registry.get_sample_value("tinyllm_cache_hits_total", {"cache_type": "memory"}) is None


def test_two_collectors_are_independent_and_never_collide():
    first = MetricsCollector()
    second = MetricsCollector()
    assert first.registry is not second.registry
    first.increment_cache_hit("memory")
    memory = {"cache_type": "memory"}
    assert first.registry.get_sample_value("tinyllm_cache_hits_total", memory) == 1.0
    assert second.registry.get_sample_value("tinyllm_cache_hits_total", memory) is None
    for _ in range(20):  # repeated creation, as a test suite does, never raises
        MetricsCollector()


def test_injected_registry_is_used(registry):
    c = MetricsCollector(registry=registry)
    assert c.registry is registry
    c.increment_cache_miss("redis")
    assert registry.get_sample_value("tinyllm_cache_misses_total", {"cache_type": "redis"}) == 1.0


def test_a_second_collector_on_the_same_registry_is_a_clear_error_and_leaves_no_trace(registry):
    first = MetricsCollector(registry=registry)
    with pytest.raises(ValueError, match="registry of its own"):
        MetricsCollector(registry=registry)
    first.increment_cache_hit("memory")
    text = generate_latest(registry).decode()
    assert text.count("# TYPE tinyllm_cache_hits_total counter") == 1
    assert registry.get_sample_value("tinyllm_cache_hits_total", {"cache_type": "memory"}) == 1.0


def test_enum_label_names_never_reach_the_exposition():
    # defect: str-Enum members used as label names showed up as `MetricLabels.GRAPH`
    c = MetricsCollector()
    _record_everything(c)
    by_enum = {MetricLabels.MODEL: _Color.RED, "graph": "qa", "request_type": "x"}
    c.requests_total.labels(**by_enum).inc()
    text = generate_latest(c.registry).decode()
    assert "MetricLabels" not in text and "_Color" not in text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label in sample.labels:
                assert label.isidentifier() and "." not in label
    assert _requests(c, "red", "qa", "x") == 1.0


def test_get_metrics_collector_is_lazy_shared_and_replaceable():
    assert set_metrics_collector(None) is None  # nothing created yet (conftest reset it)
    first = get_metrics_collector()
    assert get_metrics_collector() is first
    mine = MetricsCollector(max_cardinality=7)
    assert set_metrics_collector(mine) is first
    assert get_metrics_collector() is mine
    reset_metrics_collector()
    fresh = get_metrics_collector()
    assert fresh is not mine and fresh is not first
    assert fresh.registry is not first.registry


def test_set_metrics_collector_refuses_other_objects():
    with pytest.raises(TypeError, match="MetricsCollector"):
        set_metrics_collector(object())  # type: ignore[arg-type]


def test_concurrent_first_use_creates_one_collector():
    got: list[MetricsCollector] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        got.append(get_metrics_collector())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8 and all(c is got[0] for c in got)


def test_internal_errors_are_counted_in_the_process_wide_collector():
    from tinyllm_instrument._errors import report_internal_error

    report_internal_error("span_start", RuntimeError("x"))
    report_internal_error("span_start", RuntimeError("y"))
    value = get_metrics_collector().registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": "span_start"}
    )
    assert value == 2.0


def test_importing_the_module_registers_and_starts_nothing():
    code = (
        "import threading, prometheus_client\n"
        "before = set(prometheus_client.REGISTRY._names_to_collectors)\n"
        "import tinyllm_instrument.metrics as m, tinyllm_instrument.metrics.collector as c\n"
        "after = set(prometheus_client.REGISTRY._names_to_collectors)\n"
        "assert before == after, after - before\n"
        "assert c._collector is None  # made on first use\n"
        "assert threading.active_count() == 1\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# --- the metrics server --------------------------------------------------------------------------


def _fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def test_metrics_server_serves_the_collector_on_localhost():
    c = MetricsCollector()
    c.increment_request_count("gpt-x", "qa")
    server, thread = start_metrics_server(port=0, collector=c)
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert thread.is_alive()
        text = _fetch(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # the parser names a counter family without its _total suffix
    samples = families["tinyllm_requests"].samples
    assert [(s.labels, s.value) for s in samples if s.name == "tinyllm_requests_total"] == [
        ({"model": "gpt-x", "graph": "qa", "request_type": "generate"}, 1.0)
    ]


def test_metrics_server_defaults_to_the_process_wide_collector():
    get_metrics_collector().increment_cache_hit("memory")
    server, _thread = start_metrics_server(port=0)
    try:
        text = _fetch(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    assert 'tinyllm_cache_hits_total{cache_type="memory"} 1.0' in text


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({}, "port={}"),
        ({"port_option": "--port"}, "--port {}"),
        ({"port_option": "--metrics-port"}, "--metrics-port {}"),
        ({"port_option": "TINYLLM_INSTRUMENT_METRICS_PORT"}, "TINYLLM_INSTRUMENT_METRICS_PORT={}"),
    ],
    ids=["keyword", "metrics", "run", "variable"],
)
def test_metrics_server_port_in_use_is_one_line_naming_what_the_user_typed(options, flag):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(OSError) as info:
            start_metrics_server(port=port, collector=MetricsCollector(), **options)
    assert str(info.value) == (
        f"cannot serve metrics on 127.0.0.1:{port}: the port is in use; pass another "
        f"({flag.format(port + 1)}, or {flag.format(0)} for any free one) or stop the process "
        "that holds it"
    )
    assert info.value.errno == errno.EADDRINUSE  # still an OSError with the socket's errno


def test_metrics_server_on_an_address_of_another_machine_names_the_host_option():
    with pytest.raises(OSError) as info:
        start_metrics_server(
            port=0, addr="192.0.2.1", collector=MetricsCollector(), host_option="--metrics-host"
        )
    assert str(info.value) == (
        "cannot serve metrics on 192.0.2.1:0: no interface of this machine has that address; "
        "pass --metrics-host 127.0.0.1 (this machine only) or --metrics-host 0.0.0.0 "
        "(every interface)"
    )


def test_metrics_server_without_permission_for_the_port_says_which_ports_need_it(monkeypatch):
    # Tests run as root here, where any port can be bound: inject the refusal an ordinary user
    # gets for port 80 at the one place the server binds.
    def refuse(port, addr, registry):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(metrics_mod.server, "start_http_server", refuse)
    with pytest.raises(OSError) as info:
        start_metrics_server(port=80, collector=MetricsCollector(), port_option="--port")
    assert str(info.value) == (
        "cannot serve metrics on 127.0.0.1:80: no permission to listen on that port (ports "
        "below 1024 need privileges); pass one above 1023 (--port 9090) or --port 0 for any "
        "free one"
    )


@pytest.mark.parametrize("bad", [-1, 65536, "9090", 1.5, True])
def test_metrics_server_refuses_bad_ports(bad):
    with pytest.raises(ValueError, match="0..65535"):
        start_metrics_server(port=bad, collector=MetricsCollector())


def test_module_exports_are_sorted_and_present():
    assert list(metrics_mod.__all__) == sorted(metrics_mod.__all__)
    for name in metrics_mod.__all__:
        assert hasattr(metrics_mod, name)


def test_metrics_server_listens_on_loopback_unless_told_otherwise():
    from tinyllm_instrument.metrics import start_metrics_server

    server, _thread = start_metrics_server(port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
