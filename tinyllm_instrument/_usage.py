"""Token usage of an observed call: read from a result's usage field, or told by record_usage."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from . import _config
from ._context import CURRENT_GRAPH, CURRENT_MODEL, NO_GRAPH
from ._errors import Stage, report_internal_error
from .metrics import get_metrics_collector

__all__ = ["PLAIN_RESULT_TYPES", "record_usage", "record_usage_of"]

#: Result types that never carry usage: the per-call check is one set lookup.
PLAIN_RESULT_TYPES = frozenset({type(None), bool, int, float, str, bytes, list, tuple, set})


def _usage_of(result: Any) -> tuple[int, int] | None:
    """Find (input, output) tokens in the common shapes of an LLM result, or None."""
    if type(result) in PLAIN_RESULT_TYPES:
        return None
    if isinstance(result, dict):
        usage = result.get("usage", result)
        get = usage.get if isinstance(usage, dict) else (lambda k, d=None: getattr(usage, k, d))
    else:
        usage = getattr(result, "usage", None)
        if usage is None:
            usage = result
        if isinstance(usage, dict):
            get = usage.get
        else:

            def get(key: str, default: Any = None) -> Any:
                return getattr(usage, key, default)

    inp = get("prompt_tokens")
    out = get("completion_tokens")
    if inp is None and out is None:
        inp = get("input_tokens")
        out = get("output_tokens")
    if inp is None and out is None:
        return None
    return _token_count(inp), _token_count(out)


def _token_count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"token count {value!r} is not a non-negative integer")
    return value


def record_usage_of(span: Any, model: str | None, graph: str | None, result: Any) -> None:
    """Record the usage a call's result carries, if any; a malformed one is counted, not raised."""
    try:
        usage = _usage_of(result)
    except Exception as exc:  # a malformed usage field is the app's business, not a crash
        report_internal_error(Stage.USAGE, exc)
        return
    if usage is None:
        return
    _record_tokens(span, usage[0], usage[1], model, graph)


def _record_tokens(span: Any, inp: int, out: int, model: str | None, graph: str | None) -> None:
    if span.is_recording():
        span.set_attribute("gen_ai.usage.input_tokens", inp)
        span.set_attribute("gen_ai.usage.output_tokens", out)
    get_metrics_collector().record_tokens(
        inp,
        out,
        model if model is not None else "unknown",
        graph if graph is not None else NO_GRAPH,
    )


def record_usage(
    input_tokens: int = 0, output_tokens: int = 0, *, model: str | None = None
) -> None:
    """Record token usage for the current observed call, for nodes that stream.

    Adds to ``tinyllm_tokens_input_total`` / ``tinyllm_tokens_output_total{model,graph}`` and sets
    ``gen_ai.usage.input_tokens`` / ``output_tokens`` on the current span.

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
        _record_tokens(
            trace.get_current_span(),
            inp,
            out,
            model if model is not None else CURRENT_MODEL.get(),
            CURRENT_GRAPH.get(),
        )
    except Exception as exc:
        report_internal_error(Stage.USAGE, exc)
