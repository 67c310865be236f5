"""Issue 17 point 4 under ``tinyllm-instrument run``: which model a wrapped node calls.

``--model PATTERN=NAME`` (and ``instrument(models=)``) label the span and the request and token
metrics of what PATTERN selects; without it, a result that names its model labels them. Checked
at a real OTLP receiver and on the run's own ``/metrics``, read by the program and parsed with
prometheus_client's parser.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver
from prometheus_client.parser import text_string_to_metric_families

CLI = str(Path(sys.executable).parent / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"
CLAUDE = "claude-3-5-haiku-20241022"


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_"))
        and k not in ("TRACEPARENT", "BAGGAGE", "PYTHONPATH")
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_model_app(*flags: str, receiver: GrpcTraceReceiver):
    """Run tests/apps/model_app.py under ``run``; return (samples by name, spans by name)."""
    port = _free_port()
    result = subprocess.run(
        [
            CLI,
            "run",
            "--metrics-port",
            str(port),
            "--otlp-endpoint",
            receiver.endpoint,
            *flags,
            "model_app.py",
            str(port),
        ],
        capture_output=True,
        text=True,
        cwd=APPS,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    first, exposition = result.stdout.split("\n", 1)
    assert first == "HELLO"
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    spans = {s.name: s for s in receiver.wait_for(4)}
    return samples, spans


def _models(samples: dict, name: str) -> dict[str, float]:
    """The value of metric ``name`` by its model label (every graph is 'pipeline')."""
    out: dict[str, float] = {}
    for labels, value in samples.get(name, {}).items():
        as_dict = dict(labels)
        assert as_dict["graph"] == "pipeline"
        out[as_dict["model"]] = out.get(as_dict["model"], 0) + value
    return out


@pytest.fixture
def receiver():
    with GrpcTraceReceiver() as rec:
        yield rec


def test_model_flags_label_the_span_and_the_request_and_token_metrics(receiver):
    samples, spans = _run_model_app(
        "--model",
        "model_app:call_llm=gpt-4o",
        "--model",
        "model_app:summarize=gpt-4o-mini",
        receiver=receiver,
    )
    # call_llm's result names no model: --model does; summarize returns text: still a request
    assert _models(samples, "tinyllm_requests_total") == {
        "gpt-4o": 1.0,
        "gpt-4o-mini": 1.0,
        CLAUDE: 1.0,
    }
    assert _models(samples, "tinyllm_request_latency_seconds_count") == {
        "gpt-4o": 1.0,
        "gpt-4o-mini": 1.0,
        CLAUDE: 1.0,
    }
    assert _models(samples, "tinyllm_tokens_input_total") == {"gpt-4o": 7.0, CLAUDE: 5.0}
    assert _models(samples, "tinyllm_tokens_output_total") == {"gpt-4o": 3.0, CLAUDE: 2.0}
    llm, summary = spans["call_llm"].attributes, spans["summarize"].attributes
    assert (llm["gen_ai.request.model"], llm["llm.model_name"]) == ("gpt-4o", "gpt-4o")
    assert llm["gen_ai.usage.input_tokens"] == 7
    assert summary["gen_ai.request.model"] == "gpt-4o-mini"
    assert llm["openinference.span.kind"] == summary["openinference.span.kind"] == "LLM"
    assert "gen_ai.request.model" not in spans["pipeline"].attributes  # the graph is a chain


def test_without_a_model_flag_the_result_names_the_model(receiver):
    samples, spans = _run_model_app(receiver=receiver)
    # call_claude's result has a model attribute, as Anthropic's Message has: it labels all
    assert _models(samples, "tinyllm_requests_total") == {"unknown": 1.0, CLAUDE: 1.0}
    assert _models(samples, "tinyllm_tokens_input_total") == {"unknown": 7.0, CLAUDE: 5.0}
    assert _models(samples, "tinyllm_tokens_output_total") == {"unknown": 3.0, CLAUDE: 2.0}
    claude = spans["call_claude"].attributes
    assert (claude["gen_ai.response.model"], claude["llm.model_name"]) == (CLAUDE, CLAUDE)
    assert claude["openinference.span.kind"] == "LLM"
    assert "gen_ai.request.model" not in claude  # no one asked for it: the response said it
    assert spans["summarize"].attributes["openinference.span.kind"] == "CHAIN"


def test_instrument_models_label_the_calls_in_code():
    from tinyllm_instrument import instrument, uninstrument
    from tinyllm_instrument.testing import capture

    sys.path.insert(0, str(APPS))
    try:
        instrument("model_app:*", "!model_app:main", models={"model_app:call_llm": "gpt-4o"})
        import model_app

        with capture() as cap:
            assert model_app.pipeline("hi") == "HI"
    finally:
        uninstrument()
        sys.path.remove(str(APPS))
        sys.modules.pop("model_app", None)
    assert cap.span("call_llm").attributes["gen_ai.request.model"] == "gpt-4o"
    labels = {"model": "gpt-4o", "graph": "pipeline", "request_type": "generate"}
    assert cap.sample("tinyllm_requests_total", labels) == 1
    assert cap.sample("tinyllm_tokens_input_total", {"model": "gpt-4o", "graph": "pipeline"}) == 7
    assert cap.sample("tinyllm_tokens_input_total", {"model": "unknown", "graph": "pipeline"}) in (
        None,
        0,
    )
