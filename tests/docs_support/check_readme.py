"""Check: the README's @observe example produced what the README says, in each pillar."""

import json

from tinyllm_instrument.logging import default_app_name
from tinyllm_instrument.metrics import get_metrics_collector
from tinyllm_instrument.telemetry import shutdown_telemetry

shutdown_telemetry()  # the console exporter batches: flush before reading stdout
decoder, objects, text, i = json.JSONDecoder(), [], DOC_OUTPUT(), 0  # noqa: F821
while (start := text.find("{", i)) != -1:
    try:
        obj, i = decoder.raw_decode(text, start)
        objects.append(obj)
    except json.JSONDecodeError:
        i = start + 1
spans = {o["name"]: o for o in objects if "context" in o}
assert set(spans) == {"rag", "retrieve", "generate"}, spans.keys()
root = spans["rag"]["context"]["span_id"]
assert spans["retrieve"]["parent_id"] == spans["generate"]["parent_id"] == root
assert spans["generate"]["attributes"]["tinyllm.generator.items"] == 5
assert "tinyllm.time_to_first_item_ms" in spans["generate"]["attributes"]
assert spans["retrieve"]["attributes"]["tinyllm.node"] == "retrieve"
assert spans["retrieve"]["attributes"]["tinyllm.graph"] == "rag"

registry = get_metrics_collector().registry
for node in ("retrieve", "generate"):
    labels = {"node": node, "graph": "rag"}
    assert registry.get_sample_value("tinyllm_node_executions_total", labels) == 1.0
assert (
    registry.get_sample_value(
        "tinyllm_requests_total",
        {"model": "fake-model", "graph": "rag", "request_type": "generate"},
    )
    == 1.0
)
assert (
    registry.get_sample_value("tinyllm_graph_execution_duration_seconds_count", {"graph": "rag"})
    == 1.0
)

(line,) = [o for o in objects if o.get("event") == "retrieving"]
assert line["trace_id"] == spans["retrieve"]["context"]["trace_id"].removeprefix("0x")
assert line["span_id"] == spans["retrieve"]["context"]["span_id"].removeprefix("0x")
assert {line["node"], line["graph"], line["logger"]} == {"retrieve", "rag", "quickstart"}
# The program's service name (here the doc block's own), not the kit's; no kit version.
assert line["app"] == default_app_name() and "version" not in line

types = sorted({e.event_type for e in DOC_EVENTS.get_events()})  # noqa: F821
assert types == [
    "graph.execution.completed",
    "graph.execution.started",
    "node.execution.completed",
    "node.execution.started",
], types
assert all(e.severity == "debug" for e in DOC_EVENTS.get_events())  # noqa: F821
assert "Answer: Refunds take 5 days." in DOC_OUTPUT()  # noqa: F821
