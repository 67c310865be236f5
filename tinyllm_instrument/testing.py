"""In-memory capture of spans, metric samples, log entries and events, for users' tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import events as _events
from . import logging as _logging
from . import metrics as _metrics
from . import telemetry as _telemetry

__all__ = ["Capture", "capture"]


class Capture:
    """What was produced inside one ``capture()`` block.

    Attributes:
        collector: the fresh MetricsCollector that recorded the block's metrics.
        logs: structlog event dicts, after the kit's enrichment and redaction.
        events: the Events emitted, every severity included.
    """

    def __init__(
        self,
        exporter: InMemorySpanExporter,
        collector: _metrics.MetricsCollector,
        logs: list[MutableMapping[str, Any]],
        buffer: _events.BufferedEventHandler,
    ) -> None:
        self._exporter = exporter
        self.collector = collector
        self.logs = logs
        self._buffer = buffer

    def clear(self) -> None:
        """Forget what was captured so far (spans, log entries, events); metrics stay."""
        self._exporter.clear()
        self.logs.clear()
        self._buffer.clear()

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self._exporter.get_finished_spans())

    @property
    def events(self) -> list[_events.Event]:
        return self._buffer.get_events()

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``.

        Raises:
            AssertionError: there is none, or more than one.
        """
        found = [s for s in self.spans if s.name == name]
        if len(found) != 1:
            names = sorted({s.name for s in self.spans})
            raise AssertionError(
                f"expected one span named {name!r}, found {len(found)}; spans: {names}"
            )
        return found[0]

    def spans_named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value, as ``registry.get_sample_value`` gives it (None when absent)."""
        return self.collector.registry.get_sample_value(name, dict(labels or {}))

    def events_of(self, event_type: str) -> list[_events.Event]:
        return [e for e in self.events if e.event_type == event_type]

    def logs_with(self, **match: Any) -> list[MutableMapping[str, Any]]:
        """Log entries whose fields include every ``key=value`` given."""
        return [e for e in self.logs if all(e.get(k) == v for k, v in match.items())]


@contextmanager
def capture() -> Iterator[Capture]:
    """Collect what the kit produces inside the block, isolated from the process-wide state.

    Inside the block, metrics go to a fresh collector, events to a fresh emitter (buffered, with
    the metric handler counting into that collector), log entries to a list, and spans to an
    in-memory exporter. When tracing is not configured, it is switched on for the block with the
    "none" exporter and restored afterwards. Not thread-safe across concurrent captures.

    Example:
        >>> from tinyllm_instrument import observe
        >>> from tinyllm_instrument.testing import capture
        >>> @observe(node="double")
        ... def double(x):
        ...     return 2 * x
        >>> with capture() as cap:
        ...     double(21)
        42
        >>> cap.span("double").attributes["tinyllm.node"]
        'double'
    """
    collector = _metrics.MetricsCollector()
    previous_collector = _metrics.set_metrics_collector(collector)

    buffer = _events.BufferedEventHandler(max_size=100_000)
    buffer.min_severity = _events.EventSeverity.DEBUG
    emitter = _events.EventEmitter()
    emitter.add_handler(buffer)
    emitter.add_handler(_events.MetricEventHandler())
    previous_emitter = _events.set_event_emitter(emitter)

    previous_config = _telemetry.get_telemetry_config()
    switched_on = not _telemetry.is_telemetry_enabled()
    if switched_on:
        _telemetry.configure_telemetry(
            _telemetry.TelemetryConfig(
                enable_tracing=True, exporter="none", propagate_to_threads=True
            )
        )
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    _telemetry.add_span_processor(processor)
    try:
        with structlog.testing.capture_logs(processors=_logging.enrichment_processors()) as logs:
            yield Capture(exporter, collector, logs, buffer)
    finally:
        _telemetry.remove_span_processor(processor)
        if switched_on:
            if previous_config is None:
                _telemetry.reset_telemetry()
            else:
                _telemetry.configure_telemetry(previous_config)
        _events.set_event_emitter(previous_emitter)
        _metrics.set_metrics_collector(previous_collector)
