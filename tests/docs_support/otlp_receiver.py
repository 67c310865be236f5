"""Setup: real OTLP receivers in this process, gRPC and HTTP, in place of Jaeger or a Collector.

Blocks write the standard ports (4317 gRPC, 4318 HTTP); DOC_PORTS maps them to the receivers' free
ports. A check reads what arrived from DOC_GRPC / DOC_HTTP.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for otlp_receivers

from otlp_receivers import GrpcTraceReceiver, HttpTraceReceiver  # noqa: E402

DOC_GRPC = GrpcTraceReceiver().start()
DOC_HTTP = HttpTraceReceiver().start()
DOC_PORTS = {4317: DOC_GRPC.port, 4318: int(DOC_HTTP.endpoint.rsplit(":", 1)[1])}
