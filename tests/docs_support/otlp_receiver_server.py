"""Background setup for shell blocks: an OTLP/gRPC receiver on a free port, until SIGINT.

Prints ``PORTS 4317=<port>`` and ``READY``; the harness rewrites :4317 in the block.
"""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for otlp_receivers

from otlp_receivers import GrpcTraceReceiver  # noqa: E402

receiver = GrpcTraceReceiver().start()
print(f"PORTS 4317={receiver.port}", flush=True)
print("READY", flush=True)
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))  # also when started with SIGINT ignored
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    signal.pause()
finally:
    receiver.stop()
