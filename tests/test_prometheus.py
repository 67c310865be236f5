"""A real Prometheus scrapes a live app and answers the guide's PromQL; exemplars lead to traces.

The app is examples/graph_app.py under `tinyllm-instrument run --metrics-port`, exporting its
spans to the test's OTLP receiver.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver
from prometheus_server import PrometheusServer, free_port

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "graph_app.py"
CLI = Path(sys.executable).with_name("tinyllm-instrument")

# The guide's "Example Queries" and "Grafana Dashboard" sections, verbatim.
GUIDE_QUERIES = {
    "request rate": "rate(tinyllm_requests_total[5m])",
    "average latency by model": "rate(tinyllm_request_latency_seconds_sum[5m])\n"
    "  / rate(tinyllm_request_latency_seconds_count[5m])",
    "p95 node execution time": "histogram_quantile(0.95,\n"
    "  rate(tinyllm_node_execution_duration_seconds_bucket[5m]))",
    "cache hit rate": "rate(tinyllm_cache_hits_total[5m])\n"
    "  / (rate(tinyllm_cache_hits_total[5m])\n"
    "     + rate(tinyllm_cache_misses_total[5m]))",
    "latency heatmap": "histogram_quantile(0.95,\n"
    "  rate(tinyllm_request_latency_seconds_bucket[5m]))",
}
GUIDE_ERROR_RATE = "rate(tinyllm_errors_total[5m]) / rate(tinyllm_requests_total[5m])"
# The same question asked so that it can be answered: both sides on the labels they share.
ERROR_RATE = (
    "sum by (model, graph) (rate(tinyllm_errors_total[5m]))"
    " / sum by (model, graph) (rate(tinyllm_requests_total[5m]))"
)


def _wait_for_port(port: int, app: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"the app exited early with {app.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the app's metrics port never opened")


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    with GrpcTraceReceiver() as receiver:
        command = [
            str(CLI),
            "run",
            "--otlp-endpoint",
            receiver.endpoint,
            "--metrics-port",
            str(port),
            "--log-format",
            "json",
            "--log-file",
            str(workdir / "app.log"),
            str(APP),
            "--forever",
        ]
        stderr = (workdir / "app.stderr").open("w")  # a file: a pipe nobody drains can block
        with stderr, subprocess.Popen(command, stderr=stderr, text=True) as app:
            try:
                _wait_for_port(port, app)
                with PrometheusServer(workdir, [f"127.0.0.1:{port}"]) as prometheus:
                    # rate() needs two scrapes of every series; wait until the slowest has them.
                    prometheus.wait_for("rate(tinyllm_errors_total[5m])")
                    yield prometheus, receiver
            finally:
                app.terminate()
                app.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GUIDE_QUERIES))
def test_guide_query_returns_data(live_stack, name):
    prometheus, _ = live_stack
    result = prometheus.wait_for(GUIDE_QUERIES[name])
    assert result, f"{name}: {GUIDE_QUERIES[name]!r} returned no data"
    assert all(len(sample["value"]) == 2 for sample in result)


@pytest.mark.slow
def test_error_rate_needs_matching_labels(live_stack):
    prometheus, _ = live_stack
    # As the guide writes it, errors{error_type,..} / requests{request_type,..} never match.
    assert prometheus.query(GUIDE_ERROR_RATE) == []
    result = prometheus.wait_for(ERROR_RATE)
    assert result and {s["metric"]["model"] for s in result} == {"gpt-4o-mini"}
    assert 0 < float(result[0]["value"][1]) < 1


@pytest.mark.slow
def test_exemplars_lead_from_metrics_to_received_traces(live_stack):
    prometheus, receiver = live_stack
    deadline = time.monotonic() + 30
    trace_ids: set[str] = set()
    while not trace_ids and time.monotonic() < deadline:
        now = time.time()
        data = prometheus.api(
            "query_exemplars",
            query="tinyllm_node_execution_duration_seconds_bucket",
            start=now - 300,
            end=now,
        )
        trace_ids = {e["labels"]["trace_id"] for series in data for e in series["exemplars"]}
        if not trace_ids:
            time.sleep(0.5)
    assert trace_ids, "Prometheus stored no exemplars"
    received = {span.trace_id for span in receiver.wait_for(1)}
    deadline = time.monotonic() + 30
    while not trace_ids & received and time.monotonic() < deadline:
        time.sleep(0.5)
        received = {span.trace_id for span in receiver.spans}
    assert trace_ids & received, "no exemplar trace id matches a span the receiver got"


@pytest.mark.slow
def test_troubleshooting_targets_check_shows_the_kit_endpoint_up(live_stack):
    # docs/troubleshooting.md "Verify Prometheus is scraping": /api/v1/targets, read as the page
    # says (health, lastError), against a real Prometheus scraping a `run --metrics-port` app.
    prometheus, _ = live_stack
    (target,) = prometheus.api("targets")["activeTargets"]
    assert target["health"] == "up" and target["lastError"] == ""
    assert target["scrapeUrl"].endswith("/metrics")
