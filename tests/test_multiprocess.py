"""Beyond one process: pre-fork workers aggregate their metrics, and span export survives fork."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from otlp_receivers import HttpTraceReceiver
from prometheus_client.parser import text_string_to_metric_families

WORKERS = textwrap.dedent(
    """
    import os, sys, urllib.request
    from tinyllm_instrument import observe
    from tinyllm_instrument.metrics import (
        configure_metrics, mark_process_dead, start_metrics_server,
    )

    configure_metrics(multiprocess_dir=sys.argv[1])

    @observe(node="work", graph="g")
    def work(i):
        return i

    @observe(node="llm", model="m")
    def llm():
        return {"usage": {"prompt_tokens": 2, "completion_tokens": 1}}

    pids = []
    for w in range(4):
        pid = os.fork()
        if pid == 0:  # a worker: count, then leave like a pre-fork worker does
            for i in range(250 * (w + 1)):
                work(i)
            llm()
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        mark_process_dead(pid)
    server, _ = start_metrics_server(port=0)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics") as response:
        sys.stdout.write(response.read().decode())
    server.shutdown()
    """
)


def test_four_forked_workers_aggregate_in_the_metrics_server(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", WORKERS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out.stdout)
        for s in family.samples
    }
    work = (("graph", "g"), ("node", "work"))
    assert samples[("tinyllm_node_executions_total", work)] == 250 + 500 + 750 + 1000
    assert samples[("tinyllm_node_execution_duration_seconds_count", work)] == 2500
    model = (("graph", "none"), ("model", "m"))
    assert samples[("tinyllm_tokens_input_total", model)] == 4 * 2
    assert samples[("tinyllm_requests_total", model + (("request_type", "generate"),))] == 4
    # A gauge is summed over live workers only: the dead ones are gone, not stuck at a value.
    assert all(
        value == 0 for (name, _), value in samples.items() if name == "tinyllm_active_requests"
    )
    assert list(tmp_path.glob("*.db")), "workers wrote no multiprocess files"


FORK = textwrap.dedent(
    """
    import os, sys
    from tinyllm_instrument.telemetry import (
        TelemetryConfig, configure_telemetry, flush_telemetry, shutdown_telemetry, trace_span,
    )

    configure_telemetry(TelemetryConfig(
        enable_tracing=True, exporter="otlp", otlp_protocol="http/protobuf",
        otlp_endpoint=sys.argv[1], service_name="forked"))
    with trace_span("parent-before-fork"):
        pass
    assert flush_telemetry(5)
    pid = os.fork()
    if pid == 0:
        with trace_span("child-after-fork", attributes={"pid": os.getpid()}):
            pass
        shutdown_telemetry(timeout=5)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    with trace_span("parent-after-fork"):
        pass
    shutdown_telemetry(timeout=5)
    """
)


def test_span_export_keeps_working_in_a_forked_child():
    with HttpTraceReceiver() as receiver:
        out = subprocess.run(
            [sys.executable, "-c", FORK, receiver.endpoint],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        spans = receiver.wait_for(3, timeout=10)
    names = sorted(span.name for span in spans)
    assert names == ["child-after-fork", "parent-after-fork", "parent-before-fork"]
    (child,) = [s for s in spans if s.name == "child-after-fork"]
    assert child.resource["service.name"] == "forked"


def test_reset_multiprocess_puts_back_what_configure_metrics_changed(tmp_path, monkeypatch):
    from prometheus_client import values as prometheus_values

    from tinyllm_instrument import metrics

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    value_class = prometheus_values.ValueClass
    metrics.configure_metrics(multiprocess_dir=tmp_path)
    try:
        assert metrics.is_multiprocess()
        metrics.get_metrics_collector().increment_cache_hit("memory")
        written = sorted(tmp_path.glob("*.db"))
        assert written, "multiprocess mode wrote no file"
    finally:
        metrics.reset_multiprocess()
    assert not metrics.is_multiprocess()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert prometheus_values.ValueClass is value_class
    # A fresh collector, in memory again: nothing more is written to the folder.
    collector = metrics.get_metrics_collector()
    collector.increment_cache_hit("memory")
    assert (
        collector.registry.get_sample_value("tinyllm_cache_hits_total", {"cache_type": "memory"})
        == 1
    )
    assert sorted(tmp_path.glob("*.db")) == written
    metrics.reset_multiprocess()  # off already: nothing to undo


def test_reset_multiprocess_keeps_a_directory_the_environment_set_before(tmp_path, monkeypatch):
    from tinyllm_instrument import metrics

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(earlier))
    metrics.configure_metrics(multiprocess_dir=tmp_path)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
    metrics.reset_multiprocess()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(earlier)
    assert not metrics.is_multiprocess()
