"""The README's example: a small graph with an async node and a streaming node."""

import asyncio
import sys

from tinyllm_instrument import observe
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.metrics import get_metrics_collector
from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry

configure_logging(log_format="json")  # one JSON object per line on stdout
configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="console"))
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


if __name__ == "__main__":
    print(asyncio.run(answer("How long do refunds take?")))
    from prometheus_client import generate_latest

    wanted = ("tinyllm_node_executions_total{", "tinyllm_graph_execution_duration_seconds_count")
    for line in generate_latest(get_metrics_collector().registry).decode().splitlines():
        if line.startswith(wanted):
            sys.stdout.write(line + "\n")
