"""Check: the spans of the block reached the OTLP receivers: gRPC first, then HTTP/protobuf."""

from tinyllm_instrument.telemetry import shutdown_telemetry

shutdown_telemetry()
grpc_names = {s.name for s in DOC_GRPC.wait_for(1)}  # noqa: F821
http_names = {s.name for s in DOC_HTTP.wait_for(1)}  # noqa: F821
assert grpc_names == {"sent_to_jaeger"}, grpc_names
assert http_names == {"sent_over_http"}, http_names
