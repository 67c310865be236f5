"""@observe in the LLM vocabularies: kinds, what a result or a stream says, capture, cost.

Spans are read in memory (``tinyllm_capture``) and, where the question is what reaches a back-end,
at a real OTLP receiver; the LLM results are the SDKs' own objects (``openai``, ``anthropic``),
built from the shapes their APIs send, or come from the SDKs talking to the local servers of
tests/llm_servers.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic.types as anthropic_types
import openai.types.chat as openai_chat
import pytest
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind

from tinyllm_instrument import configure_observe, observe, record_usage
from tinyllm_instrument.observe import GRAPH_OR_NODE, NODE, observe_as
from tinyllm_instrument.telemetry import add_span_processor, remove_span_processor

# --------------------------------------------------------------------------------------------
# What LLM SDKs return and stream, as their own objects
# --------------------------------------------------------------------------------------------


def chat_completion(
    *, model: str = "gpt-4o-mini-2024-07-18", prompt: int = 31, completion: int = 7
) -> Any:
    return openai_chat.ChatCompletion.model_validate(
        {
            "id": "chatcmpl-42",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Refunds take five days."},
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 11},
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
        }
    )


def openai_chunks(text: str = "Refunds take five days.", *, usage: bool = True) -> list[Any]:
    """A chat completion stream as the SDK yields it; with include_usage, a last usage chunk."""
    base = {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini-2024-07-18"}  # fmt: skip
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": word + " "},
                              "finish_reason": None}]}
        for word in text.split()
    ]  # fmt: skip
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        chunks.append({**base, "choices": [], "usage": {
            "prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}})  # fmt: skip
    return [openai_chat.ChatCompletionChunk.model_validate(c) for c in chunks]


def anthropic_events(text: str = "Bonjour tout le monde") -> list[Any]:
    """An Anthropic messages stream as the SDK yields its raw events."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "msg_7", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 100}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]  # fmt: skip
    events += [
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": word + " "}}
        for word in text.split()
    ]  # fmt: skip
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]  # fmt: skip
    adapter: Any = anthropic_types.RawMessageStreamEvent
    from pydantic import TypeAdapter

    return [TypeAdapter(adapter).validate_python(e) for e in events]


class StartAttributes(SpanProcessor):
    """What span processors (and samplers) see when a span starts."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[SpanKind, dict[str, Any]]] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.seen[span.name] = (span.kind, dict(span.attributes))


@pytest.fixture
def at_start(tinyllm_capture):
    processor = StartAttributes()
    add_span_processor(processor)
    yield processor.seen
    remove_span_processor(processor)


def sample(cap: Any, name: str, **labels: str) -> float:
    return cap.sample(name, labels) or 0.0


# --------------------------------------------------------------------------------------------
# Kinds: validated when decorating, written when the span starts
# --------------------------------------------------------------------------------------------

KIND_ATTRIBUTES = {
    "llm": {"openinference.span.kind": "LLM", "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o", "llm.model_name": "gpt-4o",
            "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
            "llm.provider": "openai", "llm.system": "openai"},
    "embedding": {"openinference.span.kind": "EMBEDDING", "gen_ai.operation.name": "embeddings",
                  "gen_ai.request.model": "gpt-4o", "embedding.model_name": "gpt-4o"},
    "retriever": {"openinference.span.kind": "RETRIEVER", "gen_ai.operation.name": "retrieval"},
    "reranker": {"openinference.span.kind": "RERANKER"},
    "tool": {"openinference.span.kind": "TOOL", "gen_ai.operation.name": "execute_tool",
             "gen_ai.tool.name": "step", "tool.name": "step"},
    "agent": {"openinference.span.kind": "AGENT", "gen_ai.operation.name": "invoke_agent",
              "gen_ai.agent.name": "step"},
    "chain": {"openinference.span.kind": "CHAIN"},
    "guardrail": {"openinference.span.kind": "GUARDRAIL"},
    "evaluator": {"openinference.span.kind": "EVALUATOR"},
}  # fmt: skip


@pytest.mark.parametrize("kind", list(KIND_ATTRIBUTES))
def test_each_kind_writes_its_attributes_when_the_span_starts(at_start, kind):
    @observe(node="step", kind=kind, model="gpt-4o", provider="openai")
    def step():
        return "ok"

    @observe(graph="g")
    def graph():
        return step()

    graph()
    span_kind, attrs = at_start["step"]
    assert attrs.items() >= KIND_ATTRIBUTES[kind].items()
    assert span_kind is (SpanKind.CLIENT if kind in ("llm", "embedding") else SpanKind.INTERNAL)
    # a declared kind joins the execution graph
    assert (attrs["graph.node.id"], attrs["graph.node.parent_id"]) == ("step", "g")
    if kind not in ("llm", "embedding"):  # only a model call names a model for back-ends
        assert "llm.model_name" not in attrs


def test_defaults_a_graph_is_a_chain_a_model_node_an_llm_a_plain_node_a_chain(at_start):
    @observe(node="plain")
    def plain():
        return 1

    @observe(node="model_node", model="gpt-4o")
    def model_node():
        return 2

    @observe(graph="rag")
    def rag():
        return plain() + model_node()

    rag()
    assert at_start["rag"][1]["openinference.span.kind"] == "CHAIN"
    assert at_start["rag"][1]["graph.node.id"] == "rag"
    assert at_start["model_node"][0] is SpanKind.CLIENT
    assert at_start["model_node"][1]["openinference.span.kind"] == "LLM"
    assert at_start["model_node"][1]["gen_ai.request.model"] == "gpt-4o"
    # A plain node pays for one attribute more than before, and carries nothing of GenAI.
    kind, attrs = at_start["plain"]
    assert kind is SpanKind.INTERNAL
    assert set(attrs) == {
        "code.function", "code.namespace", "tinyllm.node", "tinyllm.graph",
        "openinference.span.kind",
    }  # fmt: skip
    assert attrs["openinference.span.kind"] == "CHAIN"


def test_targets_wrapped_by_run_get_the_same_defaults(at_start):
    def helper():
        return 1

    def call_model():
        return 2

    def pipeline():
        return wrapped_helper() + wrapped_model()

    wrapped_helper = observe_as(helper, NODE)
    wrapped_model = observe_as(call_model, NODE, model="gpt-4o")
    observe_as(pipeline, GRAPH_OR_NODE)()
    assert at_start[pipeline.__qualname__][1]["openinference.span.kind"] == "CHAIN"
    assert at_start[helper.__qualname__][1]["openinference.span.kind"] == "CHAIN"
    kind, attrs = at_start[call_model.__qualname__]
    assert kind is SpanKind.CLIENT
    assert attrs["openinference.span.kind"] == "LLM" and attrs["gen_ai.request.model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "prompt"}, "@observe: kind='prompt' is not one of: llm, embedding, retriever, "
                             "reranker, tool, agent, chain, guardrail, evaluator"),
        ({"kind": "LLM"}, "is not one of: llm, embedding"),
        ({"kind": 3}, "kind=3 is not one of"),
        ({"graph": "g", "kind": "llm"}, "a graph is not one model call"),
        ({"provider": ""}, r"@observe\(provider=''\): provider must be a non-empty string"),
        ({"provider": 3}, "provider must be a non-empty string"),
        ({"node": "n", "new_trace": True}, r"only a graph \(graph= without node=\)"),
        ({"graph": "g", "new_trace": "yes"}, "use new_trace=True"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_when_decorating_with_a_clear_message(options, message):
    with pytest.raises(ValueError, match=message):

        @observe(**options)
        def step():
            return 1


def test_spec_span_names_are_an_option_and_node_names_the_default(tinyllm_capture):
    @observe(node="answer", model="gpt-4o")
    def answer():
        return 1

    @observe(node="search", kind="tool")
    def search():
        return 2

    @observe(node="plain")
    def plain():
        return 3

    @observe(node="named", model="gpt-4o", name="my span")
    def named():
        return 4

    for f in (answer, search, plain, named):
        f()
    configure_observe(span_names="spec")
    for f in (answer, search, plain, named):
        f()
    names = [s.name for s in tinyllm_capture.spans]
    assert names == ["answer", "search", "plain", "my span",
                     "chat gpt-4o", "execute_tool search", "plain", "my span"]  # fmt: skip
    with pytest.raises(ValueError, match="span_names='chat': use 'node'"):
        configure_observe(span_names="chat")


# --------------------------------------------------------------------------------------------
# What a result says
# --------------------------------------------------------------------------------------------


def test_an_llm_result_writes_response_usage_in_both_vocabularies_and_feeds_the_metrics(
    tinyllm_capture,
):
    configure_observe(prices={"gpt-4o-mini": (0.15, 0.6)})

    @observe(node="generate", model="gpt-4o-mini")
    def generate():
        return chat_completion()

    @observe(graph="qa")
    def qa():
        return generate()

    qa()
    attrs = tinyllm_capture.span("generate").attributes
    expected = {
        "gen_ai.provider.name": "openai",  # from the result's SDK package: no provider= given
        "gen_ai.system": "openai",
        "llm.provider": "openai",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "llm.model_name": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-42",
        "gen_ai.usage.input_tokens": 31,
        "llm.token_count.prompt": 31,
        "gen_ai.usage.output_tokens": 7,
        "llm.token_count.completion": 7,
        "llm.token_count.total": 38,
        "gen_ai.usage.cache_read.input_tokens": 11,
        "llm.token_count.prompt_details.cache_read": 11,
        "gen_ai.usage.reasoning.output_tokens": 3,
        "llm.token_count.completion_details.reasoning": 3,
    }
    assert dict(attrs).items() >= expected.items()
    assert list(attrs["gen_ai.response.finish_reasons"]) == ["stop"]
    cost = (31 * 0.15 + 7 * 0.6) / 1e6  # a dated snapshot is priced as its model
    assert attrs["llm.cost.total"] == attrs["gen_ai.usage.cost"] == pytest.approx(cost)
    assert attrs["llm.cost.prompt"] == pytest.approx(31 * 0.15 / 1e6)
    labels = {"model": "gpt-4o-mini", "graph": "qa"}  # the decorator's model: a stable label
    assert sample(tinyllm_capture, "tinyllm_tokens_input_total", **labels) == 31
    assert sample(tinyllm_capture, "tinyllm_tokens_output_total", **labels) == 7
    assert sample(tinyllm_capture, "tinyllm_cost_usd_total", **labels) == pytest.approx(cost)
    assert sample(tinyllm_capture, "tinyllm_requests_total", request_type="generate",
                  **labels) == 1  # fmt: skip
    # never aggregated on the graph: Langfuse would take the graph for a generation
    graph_attrs = tinyllm_capture.span("qa").attributes
    assert not [k for k in graph_attrs if k.startswith(("gen_ai.", "llm."))]


def test_a_result_without_a_model_argument_labels_the_metrics_with_its_own_model(
    tinyllm_capture,
):
    # run wraps functions it knows nothing about: the result's model labels them (issue 17).
    @observe(node="call_llm")
    def call_llm():
        return chat_completion(model="gpt-4o-2024-08-06")

    @observe(node="config")
    def config():
        return {"model": "gpt-4o", "temperature": 0}  # names a model, is no model's answer

    @observe(graph="app")
    def app():
        call_llm()
        return config()

    app()
    labels = {"model": "gpt-4o-2024-08-06", "graph": "app"}
    assert sample(tinyllm_capture, "tinyllm_tokens_input_total", **labels) == 31
    assert sample(tinyllm_capture, "tinyllm_requests_total", request_type="generate",
                  **labels) == 1  # fmt: skip
    assert sample(tinyllm_capture, "tinyllm_tokens_input_total", model="unknown", graph="app") == 0
    attrs = tinyllm_capture.span("call_llm").attributes
    assert attrs["openinference.span.kind"] == "LLM"  # it turned out to be a model call
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.usage.input_tokens"] == 31
    config_attrs = tinyllm_capture.span("config").attributes
    assert config_attrs["openinference.span.kind"] == "CHAIN"
    assert "gen_ai.response.model" not in config_attrs
    # and the same through run's wrapper
    wrapped = observe_as(lambda: chat_completion(model="gpt-4o-2024-11-20"), NODE)
    wrapped()
    assert sample(tinyllm_capture, "tinyllm_tokens_output_total", model="gpt-4o-2024-11-20",
                  graph="none") == 7  # fmt: skip


def test_a_graph_returning_usage_carries_none_of_it(tinyllm_capture):
    @observe(graph="g")
    def g():
        return {"usage": {"prompt_tokens": 5, "completion_tokens": 1}, "model": "m"}

    g()
    attrs = tinyllm_capture.span("g").attributes
    assert not [k for k in attrs if k.startswith(("gen_ai.", "llm."))]
    assert sample(tinyllm_capture, "tinyllm_tokens_input_total", model="m", graph="g") == 0


def test_an_anthropic_message_and_an_embedding_result(tinyllm_capture):
    @observe(node="claude", kind="llm")
    def claude():
        return anthropic_types.Message.model_validate(
            {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
             "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
             "stop_sequence": None,
             "usage": {"input_tokens": 20, "output_tokens": 8, "cache_read_input_tokens": 100}}
        )  # fmt: skip

    @observe(node="embed", kind="embedding", model="text-embedding-3-small")
    def embed():
        return {"object": "list", "model": "text-embedding-3-small",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
                "usage": {"prompt_tokens": 4, "total_tokens": 4}}  # fmt: skip

    claude()
    embed()
    attrs = tinyllm_capture.span("claude").attributes
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.usage.input_tokens"] == 120  # Anthropic's excludes the cached ones
    assert list(attrs["gen_ai.response.finish_reasons"]) == ["end_turn"]
    assert tinyllm_capture.span("claude").kind is SpanKind.CLIENT
    embed_attrs = tinyllm_capture.span("embed").attributes
    assert embed_attrs["gen_ai.usage.input_tokens"] == 4
    assert sample(tinyllm_capture, "tinyllm_tokens_input_total",
                  model="text-embedding-3-small", graph="none") == 4  # fmt: skip
    # a declared llm node without model= labels by the response's model
    assert sample(tinyllm_capture, "tinyllm_tokens_output_total",
                  model="claude-haiku-4-5", graph="none") == 8  # fmt: skip


# --------------------------------------------------------------------------------------------
# Streaming usage
# --------------------------------------------------------------------------------------------


def _stream_node(items: list[Any], *, fail_after: int | None = None, **options: Any) -> Any:
    @observe(node="stream", **options)
    def stream():
        for i, item in enumerate(items):
            if fail_after is not None and i == fail_after:
                raise ConnectionError("stream cut")
            yield item

    return stream


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_a_complete_stream_records_its_usage(tinyllm_capture, shape):
    configure_observe(prices={"gpt-4o-mini": (0.15, 0.6), "claude-haiku-4-5": (1.0, 5.0)})
    items = openai_chunks() if shape == "openai" else anthropic_events()
    model = "gpt-4o-mini" if shape == "openai" else "claude-haiku-4-5"
    stream = _stream_node(items, model=model, capture_output=True)
    assert list(stream()) == items  # the consumer gets exactly what was yielded
    attrs = tinyllm_capture.span("stream").attributes
    inp, out = (20, 6) if shape == "openai" else (125, 9)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (inp, out)
    assert attrs["llm.token_count.total"] == inp + out
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.provider.name"] == shape
    ttfc = attrs["gen_ai.response.time_to_first_chunk"]
    assert ttfc == pytest.approx(attrs["tinyllm.time_to_first_item_ms"] / 1000)
    text = "Refunds take five days. " if shape == "openai" else "Bonjour tout le monde "
    assert attrs["output.value"] == text and attrs["output.mime_type"] == "text/plain"
    assert attrs["llm.output_messages.0.message.content"] == text
    assert sample(tinyllm_capture, "tinyllm_tokens_input_total", model=model, graph="none") == inp
    assert sample(tinyllm_capture, "tinyllm_cost_usd_total", model=model,
                  graph="none") == pytest.approx(attrs["llm.cost.total"])  # fmt: skip
    assert attrs["llm.cost.total"] > 0


def test_an_openai_stream_without_include_usage_has_no_tokens_and_no_error(tinyllm_capture):
    stream = _stream_node(openai_chunks(usage=False), model="gpt-4o-mini")
    list(stream())
    attrs = tinyllm_capture.span("stream").attributes
    assert "gen_ai.usage.input_tokens" not in attrs
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert sample(tinyllm_capture, "tinyllm_instrumentation_errors_total", stage="usage") == 0


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_a_failed_stream_records_what_it_saw(tinyllm_capture, shape):
    items = openai_chunks() if shape == "openai" else anthropic_events()
    # openai: the usage chunk never comes; anthropic: message_start's counts did
    stream = _stream_node(items, fail_after=3, model="m")
    with pytest.raises(ConnectionError, match="stream cut"):
        list(stream())
    span = tinyllm_capture.span("stream")
    assert span.status.status_code.name == "ERROR"
    if shape == "anthropic":
        assert span.attributes["gen_ai.usage.input_tokens"] == 125
        assert span.attributes["gen_ai.usage.output_tokens"] == 1  # message_start's own count
        assert sample(tinyllm_capture, "tinyllm_tokens_input_total", model="m", graph="none") == 125
    else:
        assert "gen_ai.usage.input_tokens" not in span.attributes
        assert span.attributes["gen_ai.response.id"] == "chatcmpl-s1"


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_a_stream_closed_early_records_what_was_seen_so_far(tinyllm_capture, shape):
    items = openai_chunks() if shape == "openai" else anthropic_events()
    stream = _stream_node(items, model="m")
    gen = stream()
    seen = [next(gen) for _ in range(2)]
    gen.close()
    assert seen == items[:2]
    attrs = tinyllm_capture.span("stream").attributes
    assert attrs["tinyllm.generator.closed_early"] is True
    assert "gen_ai.response.time_to_first_chunk" in attrs
    if shape == "anthropic":
        assert attrs["gen_ai.usage.input_tokens"] == 125
    else:
        assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"


def test_an_async_stream_of_an_llm_node_reads_its_items_too(tinyllm_capture):
    items = openai_chunks()

    @observe(node="astream", model="m")
    async def astream():
        for item in items:
            yield item

    async def consume():
        return [item async for item in astream()]

    assert asyncio.run(consume()) == items
    assert tinyllm_capture.span("astream").attributes["gen_ai.usage.output_tokens"] == 6


def test_a_plain_stream_does_not_read_its_items(tinyllm_capture):
    # Reading costs per item: only llm (and embedding) streams pay it.
    items = openai_chunks()
    list(_stream_node(items)())
    attrs = tinyllm_capture.span("stream").attributes
    assert not [k for k in attrs if k.startswith(("gen_ai.", "llm."))]
    assert attrs["openinference.span.kind"] == "CHAIN"


def test_record_usage_inside_a_call_is_not_counted_twice(tinyllm_capture):
    @observe(node="stream", model="m")
    def stream():
        yield from openai_chunks()  # carries 20 / 6 tokens
        record_usage(input_tokens=20, output_tokens=6)

    @observe(node="call", model="m")
    def call():
        record_usage(input_tokens=31, output_tokens=7)
        return chat_completion()  # carries the same 31 / 7

    list(stream())
    call()
    assert sample(tinyllm_capture, "tinyllm_tokens_input_total", model="m", graph="none") == 51
    assert sample(tinyllm_capture, "tinyllm_tokens_output_total", model="m", graph="none") == 13
    attrs = tinyllm_capture.span("call").attributes
    assert attrs["gen_ai.usage.input_tokens"] == attrs["llm.token_count.prompt"] == 31
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"  # the rest still read


# --------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------


def _priced_call(cap: Any) -> dict[str, Any]:
    @observe(node="generate", model="gpt-4o-mini")
    def generate():
        return chat_completion()

    generate()
    return dict(cap.spans_named("generate")[-1].attributes)


def test_prices_from_a_callable_and_its_faults_never_reach_the_app(tinyllm_capture):
    calls = []

    def price(model, provider, input_tokens, output_tokens):
        calls.append((model, provider, input_tokens, output_tokens))
        return 0.25

    configure_observe(prices=price)
    assert _priced_call(tinyllm_capture)["llm.cost.total"] == 0.25
    assert calls == [("gpt-4o-mini-2024-07-18", "openai", 31, 7)]
    assert "llm.cost.prompt" not in _priced_call(tinyllm_capture)  # a total only

    def broken(model, provider, input_tokens, output_tokens):
        raise RuntimeError("price service down")

    configure_observe(prices=broken)
    attrs = _priced_call(tinyllm_capture)  # the call itself is unaffected
    assert "llm.cost.total" not in attrs and attrs["gen_ai.usage.input_tokens"] == 31
    assert sample(tinyllm_capture, "tinyllm_instrumentation_errors_total", stage="cost") == 1


def test_prices_from_genai_prices_by_default_and_none_when_switched_off(tinyllm_capture):
    import genai_prices

    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=31, output_tokens=7, cache_read_tokens=11),
        "gpt-4o-mini-2024-07-18",
        provider_id="openai",
    )
    attrs = _priced_call(tinyllm_capture)
    assert attrs["llm.cost.total"] == pytest.approx(float(expected.total_price))
    configure_observe(prices=False)
    assert "llm.cost.total" not in _priced_call(tinyllm_capture)
    configure_observe(prices=True)
    assert "llm.cost.total" in _priced_call(tinyllm_capture)


def test_an_unknown_model_has_no_cost_and_no_error(tinyllm_capture):
    configure_observe(prices={"other-model": (1.0, 1.0)})
    attrs = _priced_call(tinyllm_capture)
    assert "llm.cost.total" not in attrs
    assert sample(tinyllm_capture, "tinyllm_cost_usd_total", model="gpt-4o-mini",
                  graph="none") == 0  # fmt: skip
    assert sample(tinyllm_capture, "tinyllm_instrumentation_errors_total", stage="cost") == 0


def test_record_usage_is_priced_too(tinyllm_capture):
    configure_observe(prices={"m": (1.0, 2.0)})

    @observe(node="n", model="m")
    def n():
        record_usage(input_tokens=1_000_000, output_tokens=1_000_000)

    n()
    assert tinyllm_capture.span("n").attributes["llm.cost.total"] == 3.0
    assert sample(tinyllm_capture, "tinyllm_cost_usd_total", model="m", graph="none") == 3.0


@pytest.mark.parametrize(
    ("prices", "error", "message"),
    [
        ({"m": (1.0,)}, ValueError, "give \\(usd_per_million_input"),
        (3.5, TypeError, "give a mapping"),
        (lambda model: 1.0, TypeError, "cannot be called as prices"),
    ],
)
def test_bad_prices_are_refused_at_configure_time_and_change_nothing(
    tinyllm_capture, prices, error, message
):
    configure_observe(prices={"gpt-4o-mini": (1.0, 1.0)})
    with pytest.raises(error, match=message):
        configure_observe(prices=prices, capture_bytes=128)
    assert _priced_call(tinyllm_capture)["llm.cost.total"] == pytest.approx(38 / 1e6)


# --------------------------------------------------------------------------------------------
# Capture: payloads, messages, documents
# --------------------------------------------------------------------------------------------


def test_an_llm_nodes_messages_and_reply_are_captured_bounded_and_redacted(tinyllm_capture):
    @observe(node="generate", model="gpt-4o-mini", capture_input=True, capture_output=True)
    def generate(messages, temperature=0.0):
        return chat_completion()

    generate(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "my password=hunter2, " + "x" * 10_000},
        ],
        temperature=0.2,
    )
    attrs = tinyllm_capture.span("generate").attributes
    assert attrs["llm.input_messages.0.message.role"] == "system"
    assert attrs["llm.input_messages.0.message.content"] == "Be brief."
    user = attrs["llm.input_messages.1.message.content"]
    assert "hunter2" not in user and user.endswith("...[truncated]")
    assert len(user.encode()) <= 4096
    assert attrs["llm.output_messages.0.message.role"] == "assistant"
    assert attrs["llm.output_messages.0.message.content"] == "Refunds take five days."
    captured = json.loads(attrs["input.value"])
    assert captured["temperature"] == 0.2 and "hunter2" not in attrs["input.value"]
    assert json.loads(attrs["output.value"])["model"] == "gpt-4o-mini-2024-07-18"


def test_a_retrievers_documents_ids_and_scores_always_contents_only_when_captured(
    tinyllm_capture,
):
    docs = [
        {"page_content": "Refunds take 5 days. password=hunter2", "id": "kb-1", "score": 0.92,
         "metadata": {"source": "faq"}},
        {"page_content": "Invoices go out on the 1st.", "id": "kb-2", "score": 0.71},
    ] + [{"page_content": f"doc {i}", "id": f"kb-{i}"} for i in range(3, 40)]  # fmt: skip

    @observe(node="search", kind="retriever")
    def search(q):
        return docs

    @observe(node="search_captured", kind="retriever", capture_output=True)
    def search_captured(q):
        return docs

    search("refunds")
    search_captured("refunds")
    plain = tinyllm_capture.span("search").attributes
    assert plain["tinyllm.retrieval.documents"] == 39
    assert plain["retrieval.documents.0.document.id"] == "kb-1"
    assert plain["retrieval.documents.1.document.score"] == 0.71
    assert not [k for k in plain if k.endswith((".content", ".metadata"))]
    assert "retrieval.documents.20.document.id" not in plain  # the first 20
    full = tinyllm_capture.span("search_captured").attributes
    content = full["retrieval.documents.0.document.content"]
    assert content == "Refunds take 5 days. password=[REDACTED]"
    assert json.loads(full["retrieval.documents.0.document.metadata"]) == {"source": "faq"}
    assert "output.value" in full


def test_a_huge_captured_value_is_cut_before_redaction_scans_it(tinyllm_capture, monkeypatch):
    # Redaction is linear in what it scans: a 10 MB result must not be scanned whole (issue 14).
    from tinyllm_instrument.redaction import RedactionPolicy

    scanned: list[int] = []
    original = RedactionPolicy.redact_text

    def spy(self, text, max_chars=None):
        scanned.append(len(text))
        return original(self, text, max_chars)

    monkeypatch.setattr(RedactionPolicy, "redact_text", spy)

    @observe(node="big", capture_input=True, capture_output=True)
    def big(prompt):
        return {"text": prompt, "pages": [prompt] * 50}

    big("y" * 10_000_000)
    assert scanned and max(scanned) <= 4096 + 256  # the budget and the scan margin
    assert len(tinyllm_capture.span("big").attributes["output.value"].encode()) <= 4096


# --------------------------------------------------------------------------------------------
# sys.exit inside a node
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "interrupted"), [(0, False), (None, False), (3, True),
                                                    ("bye", True)])  # fmt: skip
def test_sys_exit_zero_inside_a_node_is_a_normal_end(tinyllm_capture, code, interrupted):
    import sys

    @observe(node="finish")
    def finish():
        sys.exit(code)

    with pytest.raises(SystemExit):
        finish()
    span = tinyllm_capture.span("finish")
    assert span.status.status_code.name == "UNSET"
    assert ("tinyllm.interrupted" in span.attributes) is interrupted


# --------------------------------------------------------------------------------------------
# One trace per graph call (issue 17)
# --------------------------------------------------------------------------------------------


def test_each_call_of_a_new_trace_graph_inside_an_observed_call_is_its_own_linked_trace(
    tinyllm_capture,
):
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    seen_baggage = []

    @observe(node="step")
    def step(q):
        seen_baggage.append(baggage.get_baggage("tenant"))
        return q

    @observe(graph="answer", new_trace=True)
    def answer(q):
        return step(q)

    @observe(node="main")
    def main():
        return [answer(i) for i in range(3)]

    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        assert main() == [0, 1, 2]
    finally:
        otel_context.detach(token)
    main_span = tinyllm_capture.span("main")
    graphs = tinyllm_capture.spans_named("answer")
    steps = tinyllm_capture.spans_named("step")
    assert len(graphs) == 3 and len({g.context.trace_id for g in graphs}) == 3
    for graph, child in zip(graphs, steps, strict=True):
        assert graph.parent is None  # a root
        assert graph.context.trace_id != main_span.context.trace_id
        (link,) = graph.links
        assert link.context.span_id == main_span.context.span_id
        assert link.attributes["tinyllm.link"] == "called_by"
        assert child.parent.span_id == graph.context.span_id  # its nodes stay in it
    # and the enclosing span links to each graph call
    assert [link.context.span_id for link in main_span.links] == [g.context.span_id for g in graphs]
    assert seen_baggage == ["acme"] * 3  # only the parent span left the context


def test_a_new_trace_graph_keeps_a_remote_parent_and_another_instrumentations_span(
    tinyllm_capture,
):
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    @observe(graph="answer", new_trace=True)
    def answer():
        return 1

    # a request from another process: the trace goes on across it
    incoming = extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    from opentelemetry import context as otel_context

    token = otel_context.attach(incoming)
    try:
        answer()
    finally:
        otel_context.detach(token)
    # an HTTP server's span of another instrumentation, with no observed call around
    with trace.get_tracer("web.framework").start_as_current_span("GET /ask") as server_span:
        answer()
    remote, local = tinyllm_capture.spans_named("answer")
    assert format(remote.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert remote.parent.span_id == 0xB7AD6B7169203331 and not remote.links
    assert local.parent.span_id == server_span.get_span_context().span_id and not local.links


def test_run_roles_start_a_trace_per_graph_call_with_observe_as(tinyllm_capture):
    from tinyllm_instrument.observe import GRAPH

    def answer(q):
        return q

    def main():
        return [graph(i) for i in range(2)]

    graph = observe_as(answer, GRAPH, graph="answer", new_trace=True)
    observe_as(main, NODE)()
    roots = [s for s in tinyllm_capture.spans if s.parent is None]
    assert sorted(s.name for s in roots) == ["answer", "answer", main.__qualname__]
    assert len({s.context.trace_id for s in roots}) == 3


def test_the_console_tree_prints_one_tree_per_graph_call(capsys):
    import re

    from tinyllm_instrument.telemetry import (
        TelemetryConfig,
        configure_telemetry,
        flush_telemetry,
        shutdown_telemetry,
    )

    @observe(node="lookup")
    def lookup(q):
        return q

    @observe(graph="answer", new_trace=True)
    def answer(q):
        return lookup(q)

    @observe(node="main")
    def main():
        for i in range(3):
            answer(i)

    configure_telemetry(TelemetryConfig(enable_tracing=True, service_name="app", exporter="tree"))
    try:
        main()
        assert flush_telemetry()
        printed = capsys.readouterr().out
    finally:
        shutdown_telemetry()
    trees = re.split(r"^trace [0-9a-f]{8} · app\n", printed, flags=re.M)[1:]
    assert len(trees) == 4  # three graph calls, then main's own
    for tree in trees[:3]:
        assert [line.split()[0] for line in tree.splitlines()] == ["answer", "└─"]
        assert tree.splitlines()[1].split()[1] == "lookup"
    assert trees[3].split()[0] == "main" and len(trees[3].splitlines()) == 1


def test_sys_exit_zero_in_a_node_shows_ok_in_the_tree(capsys):
    import sys

    from tinyllm_instrument.telemetry import (
        TelemetryConfig,
        configure_telemetry,
        flush_telemetry,
        shutdown_telemetry,
    )

    @observe(node="done")
    def done(code):
        sys.exit(code)

    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="tree"))
    try:
        for code in (0, 2):
            with pytest.raises(SystemExit):
                done(code)
        assert flush_telemetry()
        printed = capsys.readouterr().out
    finally:
        shutdown_telemetry()
    lines = [line for line in printed.splitlines() if line.startswith("done")]
    assert lines[0].endswith("ok")
    assert lines[1].endswith("interrupted SystemExit")
