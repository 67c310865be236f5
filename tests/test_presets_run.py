"""`run --instrument @openai / @anthropic`: unchanged apps, real SDKs, a real OTLP receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_servers import AnthropicServer, OpenAIServer
from otlp_receivers import GrpcTraceReceiver, ReceivedSpan

CLI = str(Path(sys.executable).parent / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_", "OPENAI_", "ANTHROPIC_"))
        and k not in ("TRACEPARENT", "TRACESTATE", "BAGGAGE", "PYTHONPATH")
    }
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "run", *args], capture_output=True, text=True, cwd=APPS, env=env, timeout=90
    )


@pytest.fixture
def receiver():
    with GrpcTraceReceiver() as rec:
        yield rec


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def _everything(spans: list[ReceivedSpan]) -> str:
    return repr([(s.name, s.attributes, s.events, s.resource) for s in spans])


def test_openai_app_gives_two_llm_spans_with_usage_each_with_its_http_span(receiver):
    with OpenAIServer(reply="Hi there.", input_tokens=12, output_tokens=5) as server:
        env = _env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=server.api_key)
        result = _run(
            "--instrument", "@openai", "--otlp-endpoint", receiver.endpoint, "openai_app.py",
            env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == "sync: Hi there.\nstream: Hi there.\n"
        spans = receiver.wait_for(4)
    llm = [s for s in spans if s.name == "openai.chat.completions.create"]
    assert len(llm) == 2, [s.name for s in spans]
    by_model = {s.attributes["gen_ai.request.model"]: s for s in llm}
    assert set(by_model) == {"gpt-4o-mini", "gpt-4o"}
    assert by_model["gpt-4o"].attributes["gen_ai.request.stream"] is True
    for span in llm:
        assert span.parent_span_id is None  # a preset replaces the default targets
        assert span.attributes["openinference.span.kind"] == "LLM"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.usage.input_tokens"] == 12
        assert span.attributes["gen_ai.usage.output_tokens"] == 5
        (http,) = _children(spans, span)
        assert http.kind == "CLIENT"
        assert http.scope_name == "opentelemetry.instrumentation.httpx"
        assert http.attributes.get("http.request.method", http.attributes.get("http.method")) == (
            "POST"
        )
    assert len(spans) == 4
    assert server.api_key not in _everything(spans)
    assert server.api_key not in result.stderr


@pytest.mark.parametrize("disabled", ["httpx2", "*"])
def test_disabled_instrumentations_give_no_http_spans(receiver, disabled):
    with OpenAIServer() as server:
        env = _env(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=server.api_key,
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=disabled,
        )
        result = _run(
            "--instrument", "@openai", "--otlp-endpoint", receiver.endpoint, "--print-plan",
            "openai_app.py", env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for(2)
    assert sorted(s.name for s in spans) == ["openai.chat.completions.create"] * 2
    assert "    httpx2: disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in result.stderr


def test_no_otel_instrumentations_flag_and_variable(receiver):
    with OpenAIServer() as server:
        base = _env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=server.api_key)
        for extra_args, extra_env in (
            (["--no-otel-instrumentations"], {}),
            ([], {"TINYLLM_INSTRUMENT_OTEL_INSTRUMENTATIONS": "0"}),
        ):
            result = _run(
                "--instrument", "@openai", "--otlp-endpoint", receiver.endpoint, *extra_args,
                "--print-plan", "openai_app.py", env={**base, **extra_env},
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert "OpenTelemetry instrumentations" not in result.stderr
        spans = receiver.wait_for(4)
    assert sorted(s.name for s in spans) == ["openai.chat.completions.create"] * 4


def test_anthropic_app_gives_llm_spans_with_usage_and_http_children_and_no_sdk_spans(receiver):
    with AnthropicServer(reply="Hello!", input_tokens=7, output_tokens=3) as server:
        env = _env(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY=server.api_key)
        result = _run(
            "--instrument", "@anthropic", "--otlp-endpoint", receiver.endpoint,
            "anthropic_app.py", env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == "sync: Hello!\nstream: Hello!\n"
        spans = receiver.wait_for(4)
    llm = [s for s in spans if s.name.startswith("anthropic.messages.")]
    assert sorted(s.name for s in llm) == ["anthropic.messages.create", "anthropic.messages.stream"]
    assert not [s for s in spans if s.scope_name == "com.anthropic.sdk.python"]
    for span in llm:
        assert span.attributes["gen_ai.provider.name"] == "anthropic"
        assert span.attributes["gen_ai.usage.input_tokens"] == 7
        assert span.attributes["gen_ai.usage.output_tokens"] == 3
        (http,) = _children(spans, span)
        assert http.scope_name == "opentelemetry.instrumentation.httpx"
    assert len(spans) == 4
    assert server.api_key not in _everything(spans)


def test_print_plan_lists_what_the_preset_wrapped_and_a_missing_library_is_a_note(receiver):
    with OpenAIServer() as server:
        env = _env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=server.api_key)
        result = _run(
            "--instrument", "@openai", "--instrument", "@anthropic", "--print-plan",
            "--exporter", "none", "openai_app.py", env=env,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "  @openai  (chat.completions" in err
    assert "    openai.resources.chat.completions.completions:Completions.create" in err
    assert "    openai.resources.chat.completions.completions:AsyncCompletions.create" in err
    assert "  @anthropic  (messages.create" in err
    assert "    matched nothing (anthropic was never imported)" in err
