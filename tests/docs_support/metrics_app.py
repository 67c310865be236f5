"""Background setup for shell blocks: the example graph, served on /metrics, until SIGINT.

Runs examples/graph_app.py's graph once (JSON logs to demo-output/app.log in the cwd, as
`make demo SERVE=1` writes them), serves the process's metrics on a free port, prints
``PORTS 9464=<port>`` and ``READY``, and waits.
"""

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import graph_app  # noqa: E402

from tinyllm_instrument.logging import configure_logging  # noqa: E402
from tinyllm_instrument.metrics import start_metrics_server  # noqa: E402

configure_logging(log_format="json", log_file="demo-output/app.log")
asyncio.run(graph_app.run())
server, _thread = start_metrics_server(port=0)
print(f"PORTS 9464={server.server_port}", flush=True)
print("READY", flush=True)
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))  # also when started with SIGINT ignored
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    signal.pause()
finally:
    server.shutdown()
    server.server_close()
