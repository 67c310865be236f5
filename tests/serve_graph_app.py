"""Runs examples/graph_app.py in a loop with metrics served and spans sent over OTLP.

Used by tests that need a live app to scrape:
    python serve_graph_app.py PORT OTLP_ENDPOINT LOG_FILE
Stops on SIGTERM, flushing its spans.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import graph_app  # noqa: E402

from tinyllm_instrument.logging import configure_logging  # noqa: E402
from tinyllm_instrument.metrics import start_metrics_server  # noqa: E402
from tinyllm_instrument.telemetry import (  # noqa: E402
    TelemetryConfig,
    configure_telemetry,
    shutdown_telemetry,
)


async def main(port: int, endpoint: str, log_file: str) -> None:
    configure_logging(log_format="json", log_file=log_file)
    configure_telemetry(
        TelemetryConfig(enable_tracing=True, exporter="otlp", otlp_endpoint=endpoint)
    )
    server, _ = start_metrics_server(port=port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    seed = 0
    while not stop.is_set():
        seed += 1
        await graph_app.run(n=4, seed=seed)
        await asyncio.sleep(0.05)
    shutdown_telemetry(timeout=5)
    server.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
