"""Check: docs/metrics.md lists every family of the collector, and the buckets it really uses."""

import re
from pathlib import Path

from tinyllm_instrument import metrics

page = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
rows = re.findall(r"^\| `(tinyllm_\w+)` \| (counter|gauge|histogram) \| ([^|]*) \|", page, re.M)
documented = {
    name: (kind, tuple(labels.strip("` ").replace(",", " ").split()) if "`" in labels else ())
    for name, kind, labels in rows
}
actual = {}
for name, guarded in metrics.MetricsCollector().metrics.items():
    (family,) = guarded.metric.collect()
    actual[name] = (family.type, tuple(guarded.label_names))
assert documented == actual, (
    "docs/metrics.md's table and the collector differ: "
    f"{set(documented.items()) ^ set(actual.items())}"
)

buckets = dict(re.findall(r"^\| `(tinyllm_\w+_seconds)` \| ([.\d ]+) \|$", page, re.M))
assert {name: [float(b) for b in row.split()] for name, row in buckets.items()} == {
    "tinyllm_request_latency_seconds": list(metrics.REQUEST_LATENCY_BUCKETS),
    "tinyllm_node_execution_duration_seconds": list(metrics.NODE_EXECUTION_BUCKETS),
    "tinyllm_graph_execution_duration_seconds": list(metrics.GRAPH_EXECUTION_BUCKETS),
    "tinyllm_queue_wait_time_seconds": list(metrics.QUEUE_WAIT_BUCKETS),
    "tinyllm_node_time_to_first_item_seconds": list(metrics.TIME_TO_FIRST_ITEM_BUCKETS),
}
