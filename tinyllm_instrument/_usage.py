"""Token usage an observed call reports itself with record_usage: span, token and cost metrics."""

from __future__ import annotations

import weakref
from typing import Any

from opentelemetry import trace

from . import _config
from ._context import CURRENT_CALL, NO_GRAPH
from ._errors import Stage, report_internal_error
from ._observe_settings import SETTINGS
from .genai import conventions as c
from .genai.cost import cost_attributes
from .genai.results import LLMResult
from .metrics import get_metrics_collector

__all__ = ["record_usage", "reported_usage"]

# The spans of calls whose code called record_usage: for them the kit adds nothing it read from
# the result or the stream, which would count the same tokens twice. Weak: a span leaves it when
# it is gone.
_REPORTED: weakref.WeakSet[Any] = weakref.WeakSet()


def reported_usage(span: Any) -> bool:
    """Whether ``record_usage`` was called inside the call of ``span``."""
    return span in _REPORTED


def _token_count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"token count {value!r} is not a non-negative integer")
    return value


def record_usage(
    input_tokens: int = 0, output_tokens: int = 0, *, model: str | None = None
) -> None:
    """Record token usage for the current observed call, when the kit cannot read it.

    Adds to ``tinyllm_tokens_input_total`` / ``tinyllm_tokens_output_total{model,graph}``, sets
    ``gen_ai.usage.input_tokens`` / ``output_tokens`` and ``llm.token_count.*`` on the current
    span, and, when the model can be priced (``configure_observe(prices=...)`` or
    genai-prices), its cost. Once a call has used it, the kit adds nothing it reads from that
    call's result or stream, so the same tokens are not counted twice.

    Args:
        input_tokens: prompt tokens to add.
        output_tokens: completion tokens to add.
        model: the model label; by default the ``model=`` of the enclosing ``@observe``.

    Raises:
        ValueError: a count is negative or not an integer.

    Example:
        >>> @observe(node="generate", model="fake-1")
        ... def generate(prompt):
        ...     for word in prompt.split():
        ...         yield word
        ...     record_usage(input_tokens=3, output_tokens=3)
    """
    inp, out = _token_count(input_tokens), _token_count(output_tokens)
    if not _config.STATE.enabled:
        return
    try:
        span = trace.get_current_span()
        _, graph, current_model = CURRENT_CALL.get()
        label = model if model is not None else current_model
        graph_label = graph if graph is not None else NO_GRAPH
        model_label = label if label is not None else "unknown"
        collector = get_metrics_collector()
        collector.record_tokens(inp, out, model_label, graph_label)
        attrs: dict[str, Any] = {
            c.GEN_AI_USAGE_INPUT_TOKENS: inp,
            c.GEN_AI_USAGE_OUTPUT_TOKENS: out,
            c.LLM_TOKEN_COUNT_PROMPT: inp,
            c.LLM_TOKEN_COUNT_COMPLETION: out,
            c.LLM_TOKEN_COUNT_TOTAL: inp + out,
        }
        pricer = SETTINGS.pricer() if label is not None else None
        if pricer is not None:
            info = LLMResult(model=label, input_tokens=inp, output_tokens=out)
            cost = pricer.price(label, None, info)
            if cost is not None:
                attrs.update(cost_attributes(cost))
                collector.record_cost(cost.total, model_label, graph_label)
        if span.get_span_context().is_valid:
            _REPORTED.add(span)
        if span.is_recording():
            span.set_attributes(attrs)
    except Exception as exc:
        report_internal_error(Stage.USAGE, exc)
