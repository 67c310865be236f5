"""Prometheus metrics for LLM workflow graphs: the collector, its cardinality guard, the server.

One concern per module, re-exported here so the guide's imports stay as they are:
``guard`` (label values and the cap on combinations), ``collector`` (the families and the
process-wide collector), ``server`` (the /metrics server and multiprocess mode).
"""

from __future__ import annotations

from .collector import (
    DEFAULT_MAX_CARDINALITY,
    GRAPH_EXECUTION_BUCKETS,
    NODE_EXECUTION_BUCKETS,
    QUEUE_WAIT_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TIME_TO_FIRST_ITEM_BUCKETS,
    MetricsCollector,
    get_metrics_collector,
    reset_metrics_collector,
    set_metrics_collector,
)
from .guard import MAX_LABEL_VALUE_LENGTH, OTHER_LABEL_VALUE, GuardedMetric, MetricLabels
from .server import (
    ENV_MULTIPROC_DIR,
    MetricsServerError,
    configure_metrics,
    is_multiprocess,
    mark_process_dead,
    reset_multiprocess,
    start_metrics_server,
)

__all__ = [
    "DEFAULT_MAX_CARDINALITY",
    "ENV_MULTIPROC_DIR",
    "GRAPH_EXECUTION_BUCKETS",
    "GuardedMetric",
    "MAX_LABEL_VALUE_LENGTH",
    "MetricLabels",
    "MetricsCollector",
    "MetricsServerError",
    "NODE_EXECUTION_BUCKETS",
    "OTHER_LABEL_VALUE",
    "QUEUE_WAIT_BUCKETS",
    "REQUEST_LATENCY_BUCKETS",
    "TIME_TO_FIRST_ITEM_BUCKETS",
    "configure_metrics",
    "get_metrics_collector",
    "is_multiprocess",
    "mark_process_dead",
    "reset_metrics_collector",
    "reset_multiprocess",
    "set_metrics_collector",
    "start_metrics_server",
]
