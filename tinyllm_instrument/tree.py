"""The tree exporter: each finished trace printed on the console as a tree of its spans.

The OpenTelemetry console exporter prints one JSON document per span, in the order spans end
(children first). :class:`TreeSpanExporter` holds the spans of each trace until the trace's root
ends, then prints the whole trace at once::

    trace 3ddbb855 · tinyllm-demo
    rag               5.3 ms  ████████████████████  ok
    ├─ router         130 µs  █···················  ok
    ├─ retriever       58 µs  ██··················  ok
    ├─ llm            4.3 ms  ·█████████████████··  ok  in 24 / out 15 tok
    └─ stream_answer  367 µs  ··················██  ok  ttfi 321 µs

Each line: the span name, indented by depth; the duration; a bar showing when, within the root
span, the span ran; the status (``ok``, ``error <ExceptionType>``, ``cancelled``,
``interrupted <ExitType>``, ``closed early``; a ``sys.exit(0)`` is a normal end, ``ok``); the
tokens, the cost and the time to the first item where the span has them (the attributes
``@observe`` sets). Colour only when the stream is a terminal and ``NO_COLOR`` is not set, unless
forced either way by the ``colour`` argument.

A root is a span without a parent in this process: no parent, or a remote one (a trace continued
from another process prints this process's part). Memory is bounded: at most ``max_traces``
unfinished traces and ``max_spans`` spans are held; past that the oldest unfinished trace is
dropped, counted in :attr:`TreeSpanExporter.dropped_spans` and noted in the output. At shutdown,
spans whose root never arrived are printed as incomplete trees rather than lost.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Sequence
from typing import IO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from . import _config
from ._atfork import call_in_forked_children

__all__ = [
    "BAR_WIDTH",
    "DEFAULT_MAX_SPANS",
    "DEFAULT_MAX_TRACES",
    "ENV_NO_COLOR",
    "TreeSpanExporter",
]

#: Set to a non-empty value, turns colour off unless ``colour=True`` is passed (no-color.org).
ENV_NO_COLOR = "NO_COLOR"
#: Characters of the duration bar; the root span fills all of them.
BAR_WIDTH = 20
#: Unfinished traces held at most before the oldest is dropped.
DEFAULT_MAX_TRACES = 1000
#: Spans held at most, over all unfinished traces, before the oldest trace is dropped.
DEFAULT_MAX_SPANS = 10_000

_NAME_WIDTH_MAX = 48
_FULL, _EMPTY = "█", "·"
_SEP = " · "

# The attributes @observe sets (see observe.py).
_INPUT_TOKENS = "gen_ai.usage.input_tokens"
_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
_COST = "llm.cost.total"
_TTFI_MS = "tinyllm.time_to_first_item_ms"
_CANCELLED = "tinyllm.cancelled"
_INTERRUPTED = "tinyllm.interrupted"
_CLOSED_EARLY = "tinyllm.generator.closed_early"

#: One printed line: (text, ANSI style) segments; the style is dropped without colour.
_Line = list[tuple[str, str]]

_RESET = "\x1b[0m"
_BOLD, _DIM, _RED, _GREEN, _YELLOW, _CYAN = (f"\x1b[{n}m" for n in (1, 2, 31, 32, 33, 36))

# C0 and C1 control characters (newlines, ESC...) in a span name would break the tree or drive
# the terminal: shown as "?".
_CONTROLS = {c: "?" for c in (*range(0x20), *range(0x7F, 0xA0))}


class TreeSpanExporter(SpanExporter):
    """Prints each trace as a tree of its spans when the trace's root span ends.

    Args:
        out: the stream to print to; None (the default) means ``sys.stdout`` at print time, so
            redirections and test capture apply.
        colour: True or False forces colour on or off; None (the default) colours only when the
            stream is a terminal and the ``NO_COLOR`` environment variable is not set.
        max_traces: unfinished traces held at most.
        max_spans: spans held at most, over all unfinished traces.

    Raises:
        ValueError: ``colour`` is not a bool or None, or a limit is not a whole number >= 1.

    Example:
        >>> from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry
        >>> configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="tree"))
    """

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        colour: bool | None = None,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_spans: int = DEFAULT_MAX_SPANS,
    ) -> None:
        if colour is not None and not isinstance(colour, bool):
            raise ValueError(f"TreeSpanExporter(colour={colour!r}): use True, False or None")
        for name, value in (("max_traces", max_traces), ("max_spans", max_spans)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"TreeSpanExporter({name}={value!r}): use a whole number, 1 or more"
                )
        self._out = out
        self._colour = colour
        self._max_traces = max_traces
        self._max_spans = max_spans
        # Export, flush and shutdown may come from different threads; one lock also keeps the
        # lines of two trees from interleaving.
        self._lock = threading.Lock()
        self._traces: dict[int, dict[int, ReadableSpan]] = {}  # oldest first
        self._held = 0
        self._unnoted = 0
        self._closed = False
        #: Spans dropped because the buffer of unfinished traces was full.
        self.dropped_spans = 0
        call_in_forked_children(self._after_fork)

    def _after_fork(self) -> None:
        # The parent's unfinished traces are the parent's to print; the child starts empty, with
        # a lock no thread of the parent can be holding.
        self._lock = threading.Lock()
        self._traces = {}
        self._held = 0
        self._unnoted = 0

    # -- SpanExporter --------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Hold ``spans``; print the tree of every root among them, with what is held of its trace.

        Returns:
            SUCCESS, or FAILURE after shutdown.
        """
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            roots = []
            # Hold the whole batch first: a root may come before its children within one batch.
            for span in spans:
                self._hold(span)
                if _is_root(span):
                    roots.append(span)
            chunks: list[list[_Line]] = []
            for root in roots:
                tree = self._take_tree(root)
                chunks.append(self._render(root, tree, complete=True))
            if chunks:
                self._write(chunks)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Print what is still held, as incomplete trees (their root never ended), and stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            chunks: list[list[_Line]] = []
            for trace in self._traces.values():
                for root in _local_roots(trace):
                    chunks.append(self._render(root, trace, complete=False))
            self._traces.clear()
            self._held = 0
            if chunks or self._unnoted:
                self._write(chunks)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the stream. Trees are printed as their roots arrive; nothing else is pending."""
        with self._lock:
            stream = self._stream()
            flush = getattr(stream, "flush", None)
            if flush is not None:
                flush()
        return True

    # -- buffering -----------------------------------------------------------------------------

    def _hold(self, span: ReadableSpan) -> None:
        trace_id = span.context.trace_id if span.context is not None else 0
        traces = self._traces
        while traces and (
            self._held >= self._max_spans
            or (trace_id not in traces and len(traces) >= self._max_traces)
        ):
            # The oldest unfinished trace is the likeliest never to finish (a root that never
            # ends, children that outlived their printed root): it goes first.
            oldest = next(iter(traces))
            dropped = len(traces.pop(oldest))
            self._held -= dropped
            self.dropped_spans += dropped
            self._unnoted += dropped
        held = traces.setdefault(trace_id, {})
        span_id = _span_id(span)
        if span_id not in held:
            self._held += 1
        held[span_id] = span

    def _take_tree(self, root: ReadableSpan) -> dict[int, ReadableSpan]:
        """Remove ``root`` and its held descendants from the buffer and return them by span id."""
        trace_id = root.context.trace_id if root.context is not None else 0
        held = self._traces.get(trace_id, {})
        by_parent = _children_index(held.values())
        taken: dict[int, ReadableSpan] = {}
        stack = [root]
        while stack:
            span = stack.pop()
            span_id = _span_id(span)
            if span_id in taken:
                continue
            taken[span_id] = span
            stack.extend(by_parent.get(span_id, ()))
        for span_id in taken:
            if held.pop(span_id, None) is not None:
                self._held -= 1
        if not held:
            self._traces.pop(trace_id, None)
        return taken

    # -- output --------------------------------------------------------------------------------

    def _stream(self) -> IO[str]:
        return self._out if self._out is not None else sys.stdout

    def _use_colour(self, stream: IO[str]) -> bool:
        if self._colour is not None:
            return self._colour
        if _config.env_str(ENV_NO_COLOR) is not None:
            return False
        try:
            return bool(stream.isatty())
        except Exception:  # a stream without isatty, or a closed one
            return False

    def _write(self, chunks: list[list[_Line]]) -> None:
        stream = self._stream()
        colour = self._use_colour(stream)
        lines = [_paint(line, colour) for chunk in chunks for line in chunk]
        if self._unnoted:
            note = (
                f"(tree: {self._unnoted} span(s) of unfinished traces dropped; at most "
                f"{self._max_traces} traces and {self._max_spans} spans are held)"
            )
            lines.append(_paint([(note, _YELLOW)], colour))
            self._unnoted = 0
        stream.write("".join(line + "\n" for line in lines))
        flush = getattr(stream, "flush", None)
        if flush is not None:
            flush()

    def _render(
        self, root: ReadableSpan, spans: dict[int, ReadableSpan], *, complete: bool
    ) -> list[_Line]:
        """The lines of one tree."""
        rows = list(_walk(root, _children_index(spans.values())))
        start0 = root.start_time or 0
        total = max((root.end_time or start0) - start0, 0)

        names = [_fit(prefix, _clean(span.name)) for prefix, span in rows]
        durations = [_duration(_span_ns(span)) for _prefix, span in rows]
        statuses = [_status(span) for _prefix, span in rows]
        extras = [_extras(span) for _prefix, span in rows]
        name_w = max(len(prefix) + len(name) for (prefix, _), name in zip(rows, names, strict=True))
        dur_w = max(len(d) for d in durations)
        status_w = max(len(text) for text, _style in statuses) if any(extras) else 0

        header = f"trace {_short_trace_id(root)}"
        service = _service(root)
        if service:
            header += _SEP + service
        if not complete:
            header += _SEP + "incomplete: its root span was not seen"
        lines: list[_Line] = [[(header, _BOLD)]]
        for i, (prefix, span) in enumerate(rows):
            name = names[i]
            status_text, status_style = statuses[i]
            error = status_style == _RED
            line: _Line = [
                (prefix, _DIM),
                (name, _BOLD if i == 0 else ""),
                (" " * (name_w - len(prefix) - len(name)) + "  ", ""),
                (durations[i].rjust(dur_w), ""),
                ("  ", ""),
            ]
            line.extend(_bar(span, start0, total, _RED if error else _CYAN))
            line.append(("  ", ""))
            line.append((status_text, status_style))
            if extras[i]:
                line.append((" " * (status_w - len(status_text)) + "  ", ""))
                line.append((extras[i], _DIM))
            lines.append(line)
        return lines


# --------------------------------------------------------------------------------------------------
# Helpers: tree shape
# --------------------------------------------------------------------------------------------------


def _span_id(span: ReadableSpan) -> int:
    return span.context.span_id if span.context is not None else id(span)


def _is_root(span: ReadableSpan) -> bool:
    return span.parent is None or span.parent.is_remote


def _children_index(spans: Iterable[ReadableSpan]) -> dict[int, list[ReadableSpan]]:
    index: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.parent is not None and not span.parent.is_remote:
            index.setdefault(span.parent.span_id, []).append(span)
    for siblings in index.values():
        # Siblings in the order they started; ties (coarse clocks) by end, then by span id.
        siblings.sort(key=lambda s: (s.start_time or 0, s.end_time or 0, _span_id(s)))
    return index


def _local_roots(spans: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """Spans whose parent is not among ``spans``, in the order they started."""
    roots = [
        span
        for span in spans.values()
        if span.parent is None or span.parent.is_remote or span.parent.span_id not in spans
    ]
    roots.sort(key=lambda s: (s.start_time or 0, s.end_time or 0))
    return roots


def _walk(
    root: ReadableSpan, index: dict[int, list[ReadableSpan]]
) -> Iterable[tuple[str, ReadableSpan]]:
    """Depth-first: (tree prefix, span) for ``root`` and its descendants in ``index``."""
    yield "", root
    root_id = _span_id(root)
    stack: list[tuple[str, list[ReadableSpan], int]] = [("", index.get(root_id, []), 0)]
    seen = {root_id}
    while stack:
        indent, siblings, i = stack.pop()
        if i >= len(siblings):
            continue
        stack.append((indent, siblings, i + 1))
        span = siblings[i]
        span_id = _span_id(span)
        if span_id in seen:  # a malformed trace cannot loop
            continue
        seen.add(span_id)
        last = i == len(siblings) - 1
        yield indent + ("└─ " if last else "├─ "), span
        stack.append((indent + ("   " if last else "│  "), index.get(span_id, []), 0))


# --------------------------------------------------------------------------------------------------
# Helpers: the columns of a line
# --------------------------------------------------------------------------------------------------


def _clean(name: str) -> str:
    return str(name).translate(_CONTROLS) or "?"


def _fit(prefix: str, name: str) -> str:
    room = max(_NAME_WIDTH_MAX - len(prefix), 8)
    return name if len(name) <= room else name[: room - 1] + "…"


def _span_ns(span: ReadableSpan) -> int:
    if span.start_time is None or span.end_time is None:
        return 0
    return max(span.end_time - span.start_time, 0)


def _duration(ns: float) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def _bar(span: ReadableSpan, start0: int, total: int, style: str) -> _Line:
    """Where the span ran within the root span: cells [start, end) of BAR_WIDTH, at least one."""
    if total <= 0:
        first, last = 0, BAR_WIDTH
    else:
        begin = min(max((span.start_time or start0) - start0, 0), total)
        end = min(max((span.end_time or start0) - start0, begin), total)
        first = min(begin * BAR_WIDTH // total, BAR_WIDTH - 1)
        last = max(-(-end * BAR_WIDTH // total), first + 1)  # ceiling, integers only
    return [
        (_EMPTY * first, _DIM),
        (_FULL * (last - first), style),
        (_EMPTY * (BAR_WIDTH - last), _DIM),
    ]


def _status(span: ReadableSpan) -> tuple[str, str]:
    attributes = span.attributes or {}
    if span.status.status_code is StatusCode.ERROR:
        kind = _error_type(span)
        return (f"error {kind}" if kind else "error"), _RED
    if attributes.get(_CANCELLED):
        return "cancelled", _YELLOW
    interrupted = attributes.get(_INTERRUPTED)
    if interrupted:
        return f"interrupted {_clean(str(interrupted))}", _YELLOW
    if attributes.get(_CLOSED_EARLY):
        return "closed early", _YELLOW
    return "ok", _GREEN


def _error_type(span: ReadableSpan) -> str:
    """The exception type's name: from the status ("Type: message"), else the exception event."""
    description = span.status.description or ""
    head, sep, _rest = description.partition(":")
    if sep and head and head.replace(".", "").replace("_", "").isalnum():
        return _clean(head.rsplit(".", 1)[-1])
    for event in reversed(span.events):
        if event.name == "exception" and event.attributes:
            kind = event.attributes.get("exception.type")
            if kind:
                return _clean(str(kind).rsplit(".", 1)[-1])
    return ""


def _extras(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    parts = []
    tokens_in = attributes.get(_INPUT_TOKENS)
    tokens_out = attributes.get(_OUTPUT_TOKENS)
    if tokens_in is not None and tokens_out is not None:
        parts.append(f"in {tokens_in} / out {tokens_out} tok")
    elif tokens_in is not None:
        parts.append(f"in {tokens_in} tok")
    elif tokens_out is not None:
        parts.append(f"out {tokens_out} tok")
    cost = attributes.get(_COST)
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        parts.append(f"${cost:.2f}" if cost >= 0.01 else f"${cost:.6f}")
    ttfi = attributes.get(_TTFI_MS)
    if isinstance(ttfi, (int, float)) and not isinstance(ttfi, bool):
        parts.append(f"ttfi {_duration(ttfi * 1e6)}")
    return ", ".join(parts)


def _short_trace_id(span: ReadableSpan) -> str:
    trace_id = span.context.trace_id if span.context is not None else 0
    return format(trace_id, "032x")[:8]


def _service(span: ReadableSpan) -> str:
    if span.resource is None:
        return ""
    name = span.resource.attributes.get("service.name")
    return _clean(str(name)) if name else ""


def _paint(segments: _Line, colour: bool) -> str:
    if colour:
        text = "".join(f"{style}{t}{_RESET}" if style and t else t for t, style in segments)
    else:
        text = "".join(t for t, _style in segments)
    return text.rstrip()
