"""The process-wide options of @observe (configure_observe), read per call one attribute each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._errors import Stage, report_internal_error
from .events import EventSeverity
from .genai.cost import Pricer, genai_prices_pricer, make_pricer
from .genai.payloads import check_budget

__all__ = [
    "DEFAULT_CAPTURE_BYTES",
    "SETTINGS",
    "SPAN_NAMES",
    "configure_observe",
    "reset_observe_settings",
]

#: Byte budget of one captured input or output attribute (after redaction, as JSON).
DEFAULT_CAPTURE_BYTES = 4096
#: Values of ``configure_observe(span_names=...)``.
SPAN_NAMES = ("node", "spec")

# The pricer before anyone asked: genai-prices when it is installed, looked up on first use.
_DEFAULT: Any = object()


class _Settings:
    """Process-wide options of @observe, read per call (one attribute each)."""

    __slots__ = ("completed_severity", "capture_bytes", "spec_span_names", "_pricer")

    def __init__(self) -> None:
        self.completed_severity: EventSeverity = EventSeverity.DEBUG
        self.capture_bytes = DEFAULT_CAPTURE_BYTES
        #: Name spans as the GenAI conventions do (``chat gpt-4o``) instead of by node name.
        self.spec_span_names = False
        self._pricer: Pricer | None = _DEFAULT

    def pricer(self) -> Pricer | None:
        """The pricer of LLM calls, or None when there is none (nothing set, no genai-prices).

        The default one is made on first use: importing genai-prices takes ~0.2 s, which a
        program that never prices a call must not pay. Never raises.
        """
        pricer = self._pricer
        if pricer is _DEFAULT:
            try:
                pricer = genai_prices_pricer()
            except Exception as exc:  # a broken genai-prices install: no cost, counted
                report_internal_error(Stage.COST, exc)
                pricer = None
            self._pricer = pricer
        return pricer


SETTINGS = _Settings()


def configure_observe(
    *,
    completed_severity: EventSeverity | str | None = None,
    capture_bytes: int | None = None,
    span_names: str | None = None,
    prices: Mapping[str, Any] | Callable[..., Any] | bool | None = None,
) -> None:
    """Set process-wide options of ``@observe``; an option left None keeps its value.

    Args:
        completed_severity: severity of ``node.execution.completed`` / ``graph.execution.completed``
            events. DEBUG by default, so that a hot node does not write a log line per call.
        capture_bytes: byte budget of each captured input/output attribute (default 4096).
        span_names: ``"node"`` (the default: spans are named after their node or graph, which a
            graph view needs) or ``"spec"``: the GenAI conventions' names (``chat gpt-4o``,
            ``execute_tool search``, ``invoke_agent planner``) for model calls, tools and agents;
            a ``name=`` given to ``@observe`` always wins. Takes effect for calls started after.
        prices: what LLM calls cost: a mapping ``{model: (usd_per_million_input,
            usd_per_million_output)}``, or a function ``(model, provider, input_tokens,
            output_tokens)`` returning USD (a float, a ``(prompt, completion)`` pair, or None
            for unknown); ``False`` prices nothing; ``True`` goes back to the default, the
            ``genai-prices`` package when it is installed (``pip install
            'tinyllm_instrument[prices]'``).

    Raises:
        ValueError: an unknown severity or span naming, a budget below 64 bytes, a mapping
            entry that is not a model with two non-negative prices.
        TypeError: ``prices`` of another type, or a function that cannot take four arguments.

    Example:
        >>> configure_observe(completed_severity="info", prices={"gpt-4o": (2.5, 10.0)})
    """
    # Everything is checked before anything is set, so a bad call changes nothing.
    severity = _severity(completed_severity) if completed_severity is not None else None
    if capture_bytes is not None:
        check_budget(capture_bytes, "capture_bytes")
    if span_names is not None and span_names not in SPAN_NAMES:
        raise ValueError(f"span_names={span_names!r}: use 'node' (the default) or 'spec'")
    pricer: Any = None
    if prices is True:
        pricer = _DEFAULT
    elif prices is False:
        pricer = False
    elif prices is not None:
        pricer = make_pricer(prices)
    if severity is not None:
        SETTINGS.completed_severity = severity
    if capture_bytes is not None:
        SETTINGS.capture_bytes = capture_bytes
    if span_names is not None:
        SETTINGS.spec_span_names = span_names == "spec"
    if pricer is not None:
        SETTINGS._pricer = None if pricer is False else pricer


def reset_observe_settings() -> None:
    """Back to the defaults (for tests)."""
    SETTINGS.__init__()  # type: ignore[misc]


def _severity(value: EventSeverity | str) -> EventSeverity:
    if isinstance(value, EventSeverity):
        return value
    try:
        return EventSeverity.coerce(value)
    except ValueError:
        allowed = ", ".join(s.value for s in EventSeverity)
        raise ValueError(f"severity={value!r} is not one of: {allowed}") from None
