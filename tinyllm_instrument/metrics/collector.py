"""MetricsCollector: the kit's metric families, their buckets, and the process-wide collector."""

from __future__ import annotations

import math
import operator
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from .guard import GuardedMetric, MetricLabels, label_name

__all__ = [
    "DEFAULT_MAX_CARDINALITY",
    "GRAPH_EXECUTION_BUCKETS",
    "MetricsCollector",
    "NODE_EXECUTION_BUCKETS",
    "QUEUE_WAIT_BUCKETS",
    "REQUEST_LATENCY_BUCKETS",
    "TIME_TO_FIRST_ITEM_BUCKETS",
    "get_metrics_collector",
    "reset_metrics_collector",
    "set_metrics_collector",
]

_M = TypeVar("_M", bound=MetricWrapperBase)

# --- Buckets -------------------------------------------------------------------------------------
# prometheus_client's defaults stop at 10 s, where an LLM call is only getting started: a completion
# commonly takes 0.5-30 s, so the defaults would put most requests in +Inf and make
# histogram_quantile() useless. Each tuple spans from "cache hit / trivial step" to "the slowest
# call worth telling apart from a timeout", on the usual 1-2.5-5 steps, then 10-30-60 s (and 120,
# 300 s for graphs) where LLM calls spend their time. About a dozen buckets per family: each
# bucket is one more series per label combination, so the list is kept short on purpose.

#: ``tinyllm_request_latency_seconds``: 5 ms (a cached answer) to 60 s (a long generation).
REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: ``tinyllm_node_execution_duration_seconds``: a node is at most one request, so the same range.
NODE_EXECUTION_BUCKETS: tuple[float, ...] = REQUEST_LATENCY_BUCKETS
#: ``tinyllm_graph_execution_duration_seconds``: a graph chains several calls, so 50 ms to 5 min.
GRAPH_EXECUTION_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
#: ``tinyllm_queue_wait_time_seconds``: an idle queue answers in about a millisecond, a saturated
#: one in tens of seconds, so it starts finer than the latency buckets.
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: ``tinyllm_node_time_to_first_item_seconds``: the first streamed token/item arrives much sooner
#: than the whole answer, so the finer queue-wait range (1 ms to 60 s) fits it.
TIME_TO_FIRST_ITEM_BUCKETS: tuple[float, ...] = QUEUE_WAIT_BUCKETS

#: ``MetricsCollector``'s default cap on label combinations per metric (the guide's example value).
DEFAULT_MAX_CARDINALITY = 1000


class _Timed:
    """Times a block into a histogram child; optionally moves a gauge and counts a counter.

    A small class rather than ``@contextmanager``: a generator-based manager costs about a
    microsecond more per use, and this sits around user calls.
    """

    __slots__ = ("_histogram", "_gauge", "_counter", "_start", "duration")

    def __init__(self, histogram: Histogram, gauge: Gauge | None, counter: Counter | None) -> None:
        self._histogram = histogram
        self._gauge = gauge
        self._counter = counter
        self._start = 0.0
        #: Seconds the block took, set when it ends (None until then).
        self.duration: float | None = None

    def __enter__(self) -> _Timed:
        if self._gauge is not None:
            self._gauge.inc()
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Failed blocks are timed and counted too: their latency is part of what users feel.
        self.duration = duration = max(time.perf_counter() - self._start, 0.0)
        try:
            self._histogram.observe(duration)
            if self._counter is not None:
                self._counter.inc()
        finally:
            if self._gauge is not None:
                self._gauge.dec()


def _check_amount(what: str, value: float) -> float:
    # Counters and histograms of sizes and durations have no meaning below zero; prometheus
    # would raise for counters and silently corrupt histogram sums, so refuse both up front.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"{what} must be >= 0, got {value!r}; pass the measured amount, not a delta"
        )
    return value


def _error_type_name(error_type: object) -> object:
    # Let callers pass the exception (or its class) itself: the label is its class name.
    if isinstance(error_type, BaseException):
        return type(error_type).__name__
    if isinstance(error_type, type) and issubclass(error_type, BaseException):
        return error_type.__name__
    return error_type


class MetricsCollector:
    """The kit's Prometheus metrics, each behind its own cardinality guard.

    Each instance owns its metrics and registers them on its own registry, so any number of
    collectors coexist (tests create one each). The families, their labels (the guide's) and the
    attribute holding each one's :class:`GuardedMetric`:

    ``tinyllm_requests_total{model,graph,request_type}``            ``requests_total``
    ``tinyllm_request_latency_seconds{model,graph}``                ``request_latency``
    ``tinyllm_active_requests{model,graph}``                        ``active_requests``
    ``tinyllm_tokens_input_total{model,graph}``                     ``tokens_input``
    ``tinyllm_tokens_output_total{model,graph}``                    ``tokens_output``
    ``tinyllm_cost_usd_total{model,graph}``                         ``cost_usd``
    ``tinyllm_errors_total{error_type,model,graph}``                ``errors_total``
    ``tinyllm_node_errors_total{node,graph,error_type}``            ``node_errors``
    ``tinyllm_node_execution_duration_seconds{node,graph}``         ``node_execution_duration``
    ``tinyllm_node_executions_total{node,graph}``                   ``node_executions``
    ``tinyllm_node_time_to_first_item_seconds{node,graph}``         ``node_time_to_first_item``
    ``tinyllm_graph_execution_duration_seconds{graph}``             ``graph_execution_duration``
    ``tinyllm_cache_hits_total{cache_type}``                        ``cache_hits``
    ``tinyllm_cache_misses_total{cache_type}``                      ``cache_misses``
    ``tinyllm_queue_size{priority}``                                ``queue_size``
    ``tinyllm_queue_wait_time_seconds{priority}``                   ``queue_wait_time``
    ``tinyllm_events_total{category,severity}``                     ``events_total``
    ``tinyllm_instrumentation_errors_total{stage}``                 ``instrumentation_errors``
    ``tinyllm_spans_dropped_total{reason}``                         ``spans_dropped``
    ``tinyllm_spans_exported_total``                                ``spans_exported``
    ``tinyllm_log_lines_dropped_total{reason}``                     ``log_lines_dropped``

    Args:
        max_cardinality: label combinations each metric may hold before new ones are folded
            into ``"other"`` (see :class:`GuardedMetric`).
        registry: where to register the metrics; a fresh ``CollectorRegistry`` when None.
            Pass ``prometheus_client.REGISTRY`` to expose them next to your own metrics.

    Raises:
        ValueError: ``max_cardinality`` is not a whole number >= 1, or ``registry`` already
            holds these metric names (another collector on the same registry).

    Example:
        >>> collector = MetricsCollector(max_cardinality=1000)
        >>> collector.increment_request_count(model="gpt-x", graph="qa")
        >>> with collector.track_request_latency(model="gpt-x", graph="qa"):
        ...     pass
        >>> collector.get_cardinality_stats()["metrics"]["tinyllm_requests_total"]
        {'cardinality': 1, 'dropped': 0}
    """

    def __init__(
        self,
        max_cardinality: int = DEFAULT_MAX_CARDINALITY,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.max_cardinality = _check_max_cardinality(max_cardinality)
        self.registry = CollectorRegistry() if registry is None else registry
        self._guarded: dict[str, GuardedMetric[Any]] = {}
        self._generation = 0
        L = MetricLabels
        g = self._guard
        self.requests_total: GuardedMetric[Counter] = g(
            Counter, "tinyllm_requests_total", "Total requests processed by model and graph.",
            (L.MODEL, L.GRAPH, L.REQUEST_TYPE),
        )  # fmt: skip
        self.request_latency: GuardedMetric[Histogram] = g(
            Histogram, "tinyllm_request_latency_seconds", "Request latency in seconds.",
            (L.MODEL, L.GRAPH), REQUEST_LATENCY_BUCKETS,
        )  # fmt: skip
        self.active_requests: GuardedMetric[Gauge] = g(
            Gauge, "tinyllm_active_requests", "Currently active requests.", (L.MODEL, L.GRAPH),
        )  # fmt: skip
        self.tokens_input: GuardedMetric[Counter] = g(
            Counter, "tinyllm_tokens_input_total", "Total input tokens processed.",
            (L.MODEL, L.GRAPH),
        )  # fmt: skip
        self.tokens_output: GuardedMetric[Counter] = g(
            Counter, "tinyllm_tokens_output_total", "Total output tokens generated.",
            (L.MODEL, L.GRAPH),
        )  # fmt: skip
        self.cost_usd: GuardedMetric[Counter] = g(
            Counter, "tinyllm_cost_usd_total",
            "USD spent on priced LLM calls (configure_observe(prices=...) or genai-prices).",
            (L.MODEL, L.GRAPH),
        )  # fmt: skip
        self.errors_total: GuardedMetric[Counter] = g(
            Counter, "tinyllm_errors_total", "Total errors by type.",
            (L.ERROR_TYPE, L.MODEL, L.GRAPH),
        )  # fmt: skip
        self.node_errors: GuardedMetric[Counter] = g(
            Counter, "tinyllm_node_errors_total", "Node-specific errors.",
            (L.NODE, L.GRAPH, L.ERROR_TYPE),
        )  # fmt: skip
        self.node_execution_duration: GuardedMetric[Histogram] = g(
            Histogram, "tinyllm_node_execution_duration_seconds",
            "Node execution duration in seconds.", (L.NODE, L.GRAPH), NODE_EXECUTION_BUCKETS,
        )  # fmt: skip
        self.node_executions: GuardedMetric[Counter] = g(
            Counter, "tinyllm_node_executions_total", "Total node executions, failed included.",
            (L.NODE, L.GRAPH),
        )  # fmt: skip
        self.node_time_to_first_item: GuardedMetric[Histogram] = g(
            Histogram, "tinyllm_node_time_to_first_item_seconds",
            "Seconds from a streaming node's start to its first item.", (L.NODE, L.GRAPH),
            TIME_TO_FIRST_ITEM_BUCKETS,
        )  # fmt: skip
        self.graph_execution_duration: GuardedMetric[Histogram] = g(
            Histogram, "tinyllm_graph_execution_duration_seconds",
            "Graph execution duration in seconds.", (L.GRAPH,), GRAPH_EXECUTION_BUCKETS,
        )  # fmt: skip
        self.cache_hits: GuardedMetric[Counter] = g(
            Counter, "tinyllm_cache_hits_total", "Cache hits by cache type.", (L.CACHE_TYPE,),
        )  # fmt: skip
        self.cache_misses: GuardedMetric[Counter] = g(
            Counter, "tinyllm_cache_misses_total", "Cache misses by cache type.", (L.CACHE_TYPE,),
        )  # fmt: skip
        self.queue_size: GuardedMetric[Gauge] = g(
            Gauge, "tinyllm_queue_size", "Current queue size by priority.", (L.PRIORITY,),
        )  # fmt: skip
        self.queue_wait_time: GuardedMetric[Histogram] = g(
            Histogram, "tinyllm_queue_wait_time_seconds", "Time spent waiting in queue, seconds.",
            (L.PRIORITY,), QUEUE_WAIT_BUCKETS,
        )  # fmt: skip
        self.events_total: GuardedMetric[Counter] = g(
            Counter, "tinyllm_events_total", "Events emitted by category and severity.",
            (L.CATEGORY, L.SEVERITY),
        )  # fmt: skip
        self.instrumentation_errors: GuardedMetric[Counter] = g(
            Counter, "tinyllm_instrumentation_errors_total",
            "Failures inside tinyllm_instrument itself, by stage; user code was unaffected.",
            (L.STAGE,),
        )  # fmt: skip
        self.spans_dropped: GuardedMetric[Counter] = g(
            Counter, "tinyllm_spans_dropped_total",
            "Finished spans that never reached the exporter, by reason: queue_full, "
            "export_failed, shutdown.",
            (L.REASON,),
        )  # fmt: skip
        self.spans_exported: GuardedMetric[Counter] = g(
            Counter, "tinyllm_spans_exported_total",
            "Finished spans the exporter accepted.", (),
        )  # fmt: skip
        self.log_lines_dropped: GuardedMetric[Counter] = g(
            Counter, "tinyllm_log_lines_dropped_total",
            "Log lines that never reached their sink, by reason: sampled, disk_full, "
            "broken_pipe, closed, write_error, render_error, rotated.",
            (L.REASON,),
        )  # fmt: skip
        self._register_all()

    def _guard(
        self,
        kind: type[_M],
        name: str,
        documentation: str,
        labels: tuple[MetricLabels, ...],
        buckets: tuple[float, ...] | None = None,
    ) -> GuardedMetric[_M]:
        names = tuple(label_name(label) for label in labels)
        extra: dict[str, Any] = {} if buckets is None else {"buckets": buckets}
        if kind is Gauge:
            # Multiprocess mode (configure_metrics): a gauge is the sum over live workers, so
            # active requests and queue sizes of dead workers drop out. Ignored otherwise.
            extra["multiprocess_mode"] = "livesum"
        # registry=None: registered together in _register_all, so a clash leaves nothing behind.
        metric = kind(name, documentation, names, registry=None, **extra)
        guarded: GuardedMetric[_M] = GuardedMetric(name, metric, names, self.max_cardinality)
        self._guarded[name] = guarded
        return guarded

    def _register_all(self) -> None:
        done: list[MetricWrapperBase] = []
        try:
            for guarded in self._guarded.values():
                self.registry.register(guarded.metric)
                done.append(guarded.metric)
        except ValueError as exc:
            for metric in done:
                self.registry.unregister(metric)
            raise ValueError(
                f"this registry already holds tinyllm metrics ({exc}); each MetricsCollector "
                "needs a registry of its own: pass registry=None or a fresh CollectorRegistry()"
            ) from exc

    @property
    def metrics(self) -> Mapping[str, GuardedMetric[Any]]:
        """Every guarded metric, by exposed family name (``"tinyllm_requests_total"`` ...)."""
        return dict(self._guarded)

    def __repr__(self) -> str:
        families = len(self._guarded)
        return f"MetricsCollector(max_cardinality={self.max_cardinality}, families={families})"

    # -- recording API (the guide's names) ---------------------------------------------------

    def increment_request_count(
        self, model: object, graph: object, request_type: object = "generate"
    ) -> None:
        """Count one request in ``tinyllm_requests_total``.

        Args:
            model: model name.
            graph: graph name.
            request_type: e.g. "generate", "stream".

        Example:
            >>> MetricsCollector().increment_request_count("gpt-x", "qa", request_type="stream")
        """
        self.requests_total.labels(model, graph, request_type).inc()

    def track_request_latency(self, model: object, graph: object) -> _Timed:
        """Context manager: time a request and count it as active while it runs.

        ``tinyllm_active_requests`` goes up on entry and down on exit, also when the block
        raises; the duration lands in ``tinyllm_request_latency_seconds`` either way.

        Args:
            model: model name.
            graph: graph name.

        Returns:
            A context manager whose ``duration`` holds the seconds taken once the block ends.

        Example:
            >>> collector = MetricsCollector()
            >>> with collector.track_request_latency("gpt-x", "qa"):
            ...     pass
        """
        return _Timed(
            self.request_latency.labels(model, graph),
            self.active_requests.labels(model, graph),
            None,
        )

    def record_tokens(
        self, input_tokens: int, output_tokens: int, model: object, graph: object
    ) -> None:
        """Add token counts to ``tinyllm_tokens_input_total`` and ``tinyllm_tokens_output_total``.

        Args:
            input_tokens: prompt tokens, >= 0.
            output_tokens: generated tokens, >= 0.
            model: model name.
            graph: graph name.

        Raises:
            ValueError: a count is negative or NaN (nothing is recorded then).
            TypeError: a count is not a number.

        Example:
            >>> MetricsCollector().record_tokens(120, 45, model="gpt-x", graph="qa")
        """
        _check_amount("input_tokens", input_tokens)
        _check_amount("output_tokens", output_tokens)
        self.tokens_input.labels(model, graph).inc(input_tokens)
        self.tokens_output.labels(model, graph).inc(output_tokens)

    def record_cost(self, usd: float, model: object, graph: object) -> None:
        """Add the USD cost of LLM calls to ``tinyllm_cost_usd_total``.

        Args:
            usd: the cost in US dollars, >= 0.
            model: model name.
            graph: graph name.

        Raises:
            ValueError: ``usd`` is negative or NaN (nothing is recorded then).
            TypeError: it is not a number.

        Example:
            >>> MetricsCollector().record_cost(0.0125, model="gpt-x", graph="qa")
        """
        _check_amount("usd", usd)
        self.cost_usd.labels(model, graph).inc(usd)

    def increment_error_count(self, error_type: object, model: object, graph: object) -> None:
        """Count one error in ``tinyllm_errors_total``.

        Args:
            error_type: a short kind, or the exception / exception class (its name is used).
            model: model name.
            graph: graph name.

        Example:
            >>> MetricsCollector().increment_error_count(TimeoutError, "gpt-x", "qa")
        """
        self.errors_total.labels(_error_type_name(error_type), model, graph).inc()

    def track_node_execution(self, node: object, graph: object) -> _Timed:
        """Context manager: time a node into ``tinyllm_node_execution_duration_seconds``.

        Each run, failed or not, is also counted in ``tinyllm_node_executions_total``.

        Args:
            node: node name.
            graph: graph name.

        Returns:
            A context manager whose ``duration`` holds the seconds taken once the block ends.

        Example:
            >>> with MetricsCollector().track_node_execution("router", "qa"):
            ...     pass
        """
        return _Timed(
            self.node_execution_duration.labels(node, graph),
            None,
            self.node_executions.labels(node, graph),
        )

    def increment_node_error_count(self, node: object, graph: object, error_type: object) -> None:
        """Count one node failure in ``tinyllm_node_errors_total``.

        Args:
            node: node name.
            graph: graph name.
            error_type: a short kind, or the exception / exception class (its name is used).

        Example:
            >>> MetricsCollector().increment_node_error_count("router", "qa", ValueError("x"))
        """
        self.node_errors.labels(node, graph, _error_type_name(error_type)).inc()

    def track_graph_execution(self, graph: object) -> _Timed:
        """Context manager: time a graph run into ``tinyllm_graph_execution_duration_seconds``.

        Args:
            graph: graph name.

        Returns:
            A context manager whose ``duration`` holds the seconds taken once the block ends.

        Example:
            >>> with MetricsCollector().track_graph_execution("qa"):
            ...     pass
        """
        return _Timed(self.graph_execution_duration.labels(graph), None, None)

    def increment_cache_hit(self, cache_type: object) -> None:
        """Count one hit in ``tinyllm_cache_hits_total``.

        Args:
            cache_type: e.g. "memory", "redis".

        Example:
            >>> MetricsCollector().increment_cache_hit("memory")
        """
        self.cache_hits.labels(cache_type).inc()

    def increment_cache_miss(self, cache_type: object) -> None:
        """Count one miss in ``tinyllm_cache_misses_total``.

        Args:
            cache_type: e.g. "memory", "redis".

        Example:
            >>> MetricsCollector().increment_cache_miss("memory")
        """
        self.cache_misses.labels(cache_type).inc()

    def update_queue_size(self, size: int, priority: object) -> None:
        """Set ``tinyllm_queue_size`` for one priority to the current size.

        Args:
            size: items waiting now, >= 0.
            priority: e.g. "high", "normal", or a number.

        Raises:
            ValueError: ``size`` is negative or NaN.
            TypeError: it is not a number.

        Example:
            >>> MetricsCollector().update_queue_size(3, priority="high")
        """
        _check_amount("size", size)
        self.queue_size.labels(priority).set(size)

    def record_queue_wait_time(self, seconds: float, priority: object) -> None:
        """Observe one wait in ``tinyllm_queue_wait_time_seconds``.

        Args:
            seconds: time spent queued, >= 0.
            priority: e.g. "high", "normal", or a number.

        Raises:
            ValueError: ``seconds`` is negative or NaN.
            TypeError: it is not a number.

        Example:
            >>> MetricsCollector().record_queue_wait_time(0.25, priority="high")
        """
        _check_amount("seconds", seconds)
        self.queue_wait_time.labels(priority).observe(seconds)

    # -- inspection and reset ----------------------------------------------------------------

    def get_cardinality_stats(self) -> dict[str, Any]:
        """Label combinations per metric, and how many were folded into ``"other"``.

        Returns:
            ``{"metrics": {<family name>: {"cardinality": int, "dropped": int}},
            "total_label_combinations": int, "max_cardinality": int}``.

        Example:
            >>> stats = MetricsCollector(max_cardinality=1000).get_cardinality_stats()
            >>> stats["max_cardinality"], stats["total_label_combinations"]
            (1000, 0)
        """
        per_metric = {
            name: {"cardinality": g.cardinality, "dropped": g.dropped}
            for name, g in self._guarded.items()
        }
        return {
            "metrics": per_metric,
            "total_label_combinations": sum(m["cardinality"] for m in per_metric.values()),
            "max_cardinality": self.max_cardinality,
        }

    def get_metrics_summary(self) -> dict[str, Any]:
        """What has been recorded, per family, in a form meant for people and the CLI.

        Returns:
            ``{"metrics": {<family name>: {...}}, "total_series": int, "max_cardinality": int}``
            where each family has ``type``, ``series`` (label combinations) and ``dropped``;
            counters and gauges add ``total`` (sum over series); histograms add ``count`` (of
            observations) and ``sum`` (of observed values).

        Example:
            >>> c = MetricsCollector()
            >>> c.increment_cache_hit("memory")
            >>> c.get_metrics_summary()["metrics"]["tinyllm_cache_hits_total"]["total"]
            1.0
        """
        families: dict[str, dict[str, Any]] = {}
        for name, guarded in self._guarded.items():
            entry: dict[str, Any] = {}
            for family in guarded.metric.collect():
                entry["type"] = family.type
                if family.type == "histogram":
                    entry["count"] = int(
                        sum(s.value for s in family.samples if s.name.endswith("_count"))
                    )
                    entry["sum"] = float(
                        sum(s.value for s in family.samples if s.name.endswith("_sum"))
                    )
                else:
                    sample_name = name  # counters: "..._total"; gauges: the family name
                    entry["total"] = float(
                        sum(s.value for s in family.samples if s.name == sample_name)
                    )
            entry["series"] = guarded.cardinality
            entry["dropped"] = guarded.dropped
            families[name] = entry
        return {
            "metrics": families,
            "total_series": sum(e["series"] for e in families.values()),
            "max_cardinality": self.max_cardinality,
        }

    def reset_metrics(self) -> None:
        """Remove every series of every family and forget all cardinality bookkeeping.

        The families stay registered; the next recording starts from zero. Children obtained
        from ``labels()`` before the reset no longer reach the registry: whoever keeps them
        should watch :attr:`generation`.

        Example:
            >>> c = MetricsCollector()
            >>> c.increment_cache_hit("memory")
            >>> c.reset_metrics()
            >>> c.get_cardinality_stats()["total_label_combinations"]
            0
        """
        for guarded in self._guarded.values():
            guarded.reset()
        self._generation += 1

    @property
    def generation(self) -> int:
        """How many times :meth:`reset_metrics` has run on this collector.

        Code that keeps children from ``labels()`` across calls (as ``@observe`` does) compares
        this to the value it saw when binding them, and binds afresh when it changed.
        """
        return self._generation


def _check_max_cardinality(value: object) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            f"max_cardinality must be a whole number >= 1, got {value!r}; "
            f"e.g. MetricsCollector(max_cardinality={DEFAULT_MAX_CARDINALITY})"
        ) from None
    if number < 1:
        raise ValueError(
            f"max_cardinality must be >= 1, got {number}; it is how many label combinations "
            "each metric may hold before folding into 'other', "
            f"e.g. MetricsCollector(max_cardinality={DEFAULT_MAX_CARDINALITY})"
        )
    return number


# --- the process-wide collector -------------------------------------------------------------------

_collector: MetricsCollector | None = None
# Re-entrant: a signal handler may record the first metric while this thread is creating the
# collector. The handler's collector is then the one kept (see _create_collector).
_collector_lock = threading.RLock()


def get_metrics_collector() -> MetricsCollector:
    """Return the process-wide collector, creating it (with its own registry) on first use.

    The metrics server serves it by default and ``@observe`` records into it.

    Returns:
        The process-wide :class:`MetricsCollector`.

    Example:
        >>> collector = get_metrics_collector()
        >>> collector is get_metrics_collector()
        True
    """
    collector = _collector
    if collector is not None:
        return collector
    return _create_collector()


def _create_collector() -> MetricsCollector:
    global _collector
    with _collector_lock:
        if _collector is None:
            created = MetricsCollector()
            if _collector is None:  # not made meanwhile by a signal handler in this thread
                _collector = created
        return _collector


def set_metrics_collector(collector: MetricsCollector | None) -> MetricsCollector | None:
    """Install ``collector`` as the process-wide collector (None: create afresh on next use).

    Args:
        collector: the collector to install, e.g. one on a test's own registry.

    Returns:
        The collector that was installed before, or None if none had been created.

    Raises:
        TypeError: ``collector`` is neither a MetricsCollector nor None.

    Example:
        >>> previous = set_metrics_collector(MetricsCollector())
        >>> _ = set_metrics_collector(previous)
    """
    global _collector
    if collector is not None and not isinstance(collector, MetricsCollector):
        raise TypeError(f"expected a MetricsCollector or None, got {type(collector).__name__}")
    with _collector_lock:
        previous, _collector = _collector, collector
    return previous


def reset_metrics_collector() -> None:
    """Discard the process-wide collector, so the next ``get_metrics_collector()`` makes a new one.

    Example:
        >>> reset_metrics_collector()
    """
    set_metrics_collector(None)
