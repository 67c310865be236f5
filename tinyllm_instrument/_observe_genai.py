"""What an observed call writes in the LLM vocabularies: captured payloads, messages, documents,
the model's usage read from a result or a stream, its cost; planned once per observed callable.

:class:`GenAIPlan` is decided when decorating, from the span's kind (see ``genai.kinds``); the
observer calls its methods only for what the plan says it does, so a plain node pays for none
of it. Nothing here raises into the observer's caller: the observer wraps each call and reports.
"""

from __future__ import annotations

import inspect
from typing import Any

from ._context import NO_GRAPH
from ._observe_settings import SETTINGS
from ._usage import reported_usage
from .genai import conventions as c
from .genai.cost import cost_attributes
from .genai.documents import document_attributes
from .genai.kinds import KindPlan
from .genai.messages import input_message_attributes, output_message_attributes
from .genai.payloads import bounded_text, payload_attributes
from .genai.results import PLAIN_RESULT_TYPES, LLMResult, read_result, read_usage, result_attributes
from .genai.streams import StreamAccumulator
from .metrics import get_metrics_collector
from .telemetry.spans import prepare_attributes

__all__ = [
    "DOCUMENTS",
    "INFER",
    "LLM",
    "GenAIPlan",
    "NOTHING",
]

#: What a call's result (or stream) is read for.
NOTHING, LLM, INFER, DOCUMENTS = "nothing", "llm", "infer", "documents"

#: Written on a node of no declared kind whose result turned out to be a model's answer.
_INFERRED_LLM = {c.OPENINFERENCE_SPAN_KIND: "LLM", c.GEN_AI_OPERATION_NAME: c.OPERATION_CHAT}
_USAGE_KEYS = frozenset(
    {
        c.GEN_AI_USAGE_INPUT_TOKENS,
        c.GEN_AI_USAGE_OUTPUT_TOKENS,
        c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        c.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
        c.LLM_TOKEN_COUNT_PROMPT,
        c.LLM_TOKEN_COUNT_COMPLETION,
        c.LLM_TOKEN_COUNT_TOTAL,
        c.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ,
        c.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE,
        c.LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING,
    }
)
#: Names a receiver conventionally has; see _signature_of.
_RECEIVER_NAMES = frozenset({"self", "cls", "mcs", "mcls", "metacls"})


class GenAIPlan:
    """The LLM side of one observed callable, decided when decorating.

    Attributes:
        reads: what the result is read for: ``LLM`` (an ``llm`` or ``embedding`` node: usage,
            response model and id, finish reasons, cost), ``INFER`` (a node of no declared
            kind: the same when its result turns out to be a model's answer, which then makes
            the span an ``LLM`` one), ``DOCUMENTS`` (a retriever or reranker) or ``NOTHING``.
        sees_items: a streaming ``llm`` / ``embedding`` node reads usage from each item.
    """

    __slots__ = (
        "reads",
        "sees_items",
        "model",
        "provider",
        "capture_input",
        "capture_output",
        "reads_messages",
        "documents_prefix",
        "signature",
        "receiver",
    )

    def __init__(
        self,
        func: Any,
        plan: KindPlan,
        *,
        declared: bool,
        is_graph: bool,
        is_stream: bool,
        model: str | None,
        provider: str | None,
        capture_input: bool,
        capture_output: bool,
    ) -> None:
        if plan.reads_usage:
            reads = LLM
        elif plan.documents_prefix is not None:
            reads = DOCUMENTS
        elif not declared and not is_graph and not is_stream:
            # A graph never carries a model's usage (Langfuse would count it as a generation);
            # a plain stream's items are not read (that costs per item).
            reads = INFER
        else:
            reads = NOTHING
        self.reads = reads
        self.sees_items = is_stream and reads == LLM
        self.model = model
        self.provider = provider
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.reads_messages = plan.reads_messages
        self.documents_prefix = plan.documents_prefix
        self.signature: inspect.Signature | None = None
        self.receiver: str | None = None
        if capture_input:
            self.signature, self.receiver = _signature_of(func)
        if reads in (LLM, INFER) and (reads == LLM or model is not None):
            SETTINGS.pricer()  # genai-prices is imported now, not in the first call

    # -- at the start of a call ------------------------------------------------------------

    def input_attributes(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """``input.value`` / ``input.mime_type``, and an llm call's messages: the arguments by
        parameter name, without a method's receiver, bounded before redaction.
        """
        data: Any = {"args": list(args), "kwargs": kwargs}
        arguments: dict[str, Any] = kwargs
        sig = self.signature
        if sig is not None:
            try:
                arguments = dict(sig.bind_partial(*args, **kwargs).arguments)
                if self.receiver is not None:
                    arguments.pop(self.receiver, None)
                data = arguments
            except TypeError:
                pass
        attrs = payload_attributes(data, "input", SETTINGS.capture_bytes)
        if self.reads_messages:
            attrs.update(input_message_attributes(arguments, content_bytes=SETTINGS.capture_bytes))
        return attrs

    # -- at the end of a call ----------------------------------------------------------------

    def output_attributes(self, result: Any) -> dict[str, Any]:
        """``output.value`` / ``output.mime_type``, and an llm call's reply as a message."""
        budget = SETTINGS.capture_bytes
        attrs: dict[str, Any] = payload_attributes(result, "output", budget)
        if self.reads_messages:
            attrs.update(output_message_attributes(result, content_bytes=budget))
        return attrs

    def on_result(self, span: Any, graph: str | None, seconds: float, result: Any) -> None:
        """Read a call's result for what the plan says: a model's answer, or documents."""
        if self.reads == DOCUMENTS:
            attrs = document_attributes(
                result,
                prefix=self.documents_prefix or c.RETRIEVAL_DOCUMENTS,
                content_bytes=SETTINGS.capture_bytes,
                include_content=self.capture_output,
            )
            if attrs and span.is_recording():
                span.set_attributes(attrs)
            return
        info = read_result(result)
        if self.reads == INFER:
            # A model's answer, not any value that happens to have a "model" key.
            if info is None or not (
                info.has_usage or (info.provider is not None and info.model is not None)
            ):
                return
            self._record(span, graph, seconds, info, _INFERRED_LLM)
            return
        if (info is None or not info.has_usage) and type(result) not in PLAIN_RESULT_TYPES:
            counts = read_usage(result)  # the usage fields on the result itself
            if counts is not None:
                inp, out, total = counts.final()
                info = (info or LLMResult())._replace(
                    input_tokens=inp,
                    output_tokens=out,
                    total_tokens=total,
                    cache_read_tokens=counts.cache_read,
                    cache_creation_tokens=counts.cache_creation,
                    reasoning_tokens=counts.reasoning,
                )
        self._record(span, graph, seconds, info, None)

    def new_accumulator(self) -> StreamAccumulator:
        """What gathers a streaming call's usage (and its text, when capturing the output)."""
        return StreamAccumulator(
            capture_text=self.capture_output, text_bytes=SETTINGS.capture_bytes
        )

    def on_stream_end(
        self,
        span: Any,
        graph: str | None,
        seconds: float,
        first_chunk_seconds: float | None,
        acc: StreamAccumulator,
    ) -> None:
        """A streaming llm call ended (exhausted, failed or closed early): what it said so far."""
        attrs: dict[str, Any] = {}
        if first_chunk_seconds is not None:
            attrs[c.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first_chunk_seconds
        if self.capture_output:
            text = acc.text
            if text is not None:
                budget = SETTINGS.capture_bytes
                attrs[c.OUTPUT_VALUE] = bounded_text(text, budget)
                attrs[c.OUTPUT_MIME_TYPE] = c.MIME_TEXT
                if self.reads_messages:
                    attrs.update(output_message_attributes(text=text, content_bytes=budget))
        if attrs and span.is_recording():
            span.set_attributes(attrs)
        self._record(span, graph, seconds, acc.result(), None)

    def _record(
        self,
        span: Any,
        graph: str | None,
        seconds: float,
        info: LLMResult | None,
        extra: dict[str, Any] | None,
    ) -> None:
        """Span attributes, token, request and cost metrics of one model call."""
        model = self.model or (info.model if info is not None else None)
        model_label = model if model is not None else "unknown"
        graph_label = graph if graph is not None else NO_GRAPH
        collector = get_metrics_collector()
        if self.model is None:
            # With model= the request was counted by the call's own handles; without, the
            # model is known only now.
            collector.requests_total.labels(model_label, graph_label, "generate").inc()
            collector.request_latency.labels(model_label, graph_label).observe(seconds)
        if info is None:
            return
        attrs: dict[str, Any] = dict(extra) if extra else {}
        attrs.update(result_attributes(info, include_provider=self.provider is None))
        if info.has_usage and not reported_usage(span):
            collector.record_tokens(
                info.input_tokens or 0, info.output_tokens or 0, model_label, graph_label
            )
            pricer = SETTINGS.pricer()
            if pricer is not None:
                cost = pricer.price(info.model or self.model, self.provider or info.provider, info)
                if cost is not None:
                    attrs.update(cost_attributes(cost))
                    collector.record_cost(cost.total, model_label, graph_label)
        else:  # record_usage told the call's usage itself
            attrs = {k: v for k, v in attrs.items() if k not in _USAGE_KEYS}
        if span.is_recording():
            prepared = prepare_attributes(attrs)
            if prepared:
                span.set_attributes(prepared)


def _signature_of(func: Any) -> tuple[inspect.Signature | None, str | None]:
    """The signature arguments are bound to, and the name of the receiver to leave out, if any.

    The wrapper of a method receives ``self`` (or ``cls``) among the arguments, as the function
    does. A function defined in a class body whose first parameter has a receiver's name is a
    method; so is whatever sits in a classmethod. A staticmethod or a callable object has none.
    """
    target = getattr(func, "__func__", func)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None, None
    params = list(signature.parameters)
    if not params or not inspect.isfunction(target) or isinstance(func, staticmethod):
        return signature, None
    owner = target.__qualname__.rpartition(".")[0]
    in_class_body = bool(owner) and not owner.endswith("<locals>")
    if isinstance(func, classmethod) or (in_class_body and params[0] in _RECEIVER_NAMES):
        return signature, params[0]
    return signature, None
