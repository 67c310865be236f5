"""The README's quickstart: a graph of two nodes, async and streaming, and all four pillars."""

import asyncio

from prometheus_client import generate_latest

from tinyllm_instrument import observe
from tinyllm_instrument.events import BufferedEventHandler, get_event_emitter
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.metrics import get_metrics_collector
from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry, flush_telemetry

# Logs: one JSON object per line on stdout. Traces: a tree of each, printed when it ends.
# Events: kept in memory here, to be printed below.
configure_logging(log_format="json")
configure_telemetry(
    TelemetryConfig(enable_tracing=True, service_name="quickstart", exporter="tree")
)
events = get_event_emitter().add_handler(BufferedEventHandler())
log = get_logger("quickstart")


@observe(node="retrieve")
async def retrieve(question: str) -> list[str]:
    log.info("retrieving", question=question)
    return ["Refunds take 5 days."]


@observe(node="generate", model="fake-model")
def generate(docs: list[str]):
    yield from f"Answer: {docs[0]}".split()


@observe(graph="rag")
async def answer(question: str) -> str:
    docs = await retrieve(question)
    return " ".join(generate(docs))


print(asyncio.run(answer("How long do refunds take?")))
flush_telemetry()  # the tree is printed by a background exporter: now, before what follows

# Metrics: what /metrics serves (start_metrics_server() or `run --metrics-port` serve it)
for line in generate_latest(get_metrics_collector().registry).decode().splitlines():
    if line.startswith(("tinyllm_node_executions_total{", "tinyllm_requests_total{")):
        print(line)

# Events: each call's lifecycle, with node, graph and duration_ms in its data
for event in events.get_events():
    print(event.event_type, event.data.get("node") or event.data.get("graph"))
