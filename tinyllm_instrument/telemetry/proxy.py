"""The kit's global tracer provider: a proxy over the SDK provider of the current configuration.

OpenTelemetry lets a process set its global provider once, and an SDK provider's resource and
sampler are fixed when it is built. So the provider the kit installs is a proxy of its own
(as logfire's is): each configuration builds a fresh SDK ``TracerProvider`` through its public
constructor (sampler, resource, the kit's id generator, the kit's span processor), and every
tracer the proxy has handed out is re-pointed at that provider's tracer. Nothing is written into
the SDK's objects, so no private attribute of any SDK version is relied on.

This module imports the SDK; :mod:`.provider` imports it only when a provider is installed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Sampler,
    TraceIdRatioBased,
)

from .._atfork import call_in_forked_children
from .config import TelemetryConfig
from .ids import KitIdGenerator
from .sampling import KitSampler

__all__ = ["KitTracer", "KitTracerProvider", "build_resource", "is_sdk_provider", "sampler_for"]


def sampler_for(rate: float) -> Sampler:
    """Parent-based sampling at ``rate`` (``ParentBased``'s decisions, see :mod:`.sampling`).
    The two ends use ALWAYS_ON / ALWAYS_OFF: the same decisions as a ratio sampler, without
    hashing the trace id on every root span."""
    if rate >= 1.0:
        return KitSampler(ALWAYS_ON)
    if rate <= 0.0:
        return KitSampler(ALWAYS_OFF)
    return KitSampler(TraceIdRatioBased(rate))


def build_resource(config: TelemetryConfig) -> Resource:
    """``service.name`` and ``resource_attributes`` of ``config`` over the SDK's defaults."""
    attributes: dict[str, Any] = dict(config.resource_attributes or {})
    attributes[SERVICE_NAME] = config.service_name
    # Resource.create adds the SDK's telemetry.sdk.* and OTEL_RESOURCE_ATTRIBUTES; ours take
    # precedence.
    created = Resource.create(attributes)
    return _HashedOnce(created.attributes, created.schema_url)


class _HashedOnce(Resource):
    """A Resource that computes its hash once. The OTLP encoder groups every span it encodes by
    resource, and ``Resource.__hash__`` JSON-dumps the attributes each time: about a tenth of the
    export thread's time in a profile of benchmarks/e2e_otlp.py. The attributes cannot change
    (an immutable ``BoundedAttributes``), so neither can the hash.
    """

    _hash: int | None = None

    def __hash__(self) -> int:
        value = self._hash
        if value is None:
            value = self._hash = super().__hash__()
        return value


def is_sdk_provider(provider: object) -> bool:
    """Whether ``provider`` is an OpenTelemetry SDK provider (the kit can add a processor to it)."""
    return isinstance(provider, SdkTracerProvider)


class KitTracer(trace.Tracer):
    """A tracer that the kit re-points at the tracer of each new SDK provider.

    ``start_span`` is the SDK tracer's own bound method, stored on the instance: starting a span
    through this proxy runs no frame of the kit's (measured in the closing note of the change
    that introduced it: the same time per span as the SDK tracer, within noise).
    ``start_as_current_span`` is the SDK's implementation, which starts its span through
    ``self.start_span``: a function decorated with it before a reconfiguration follows it.
    """

    def __init__(self, delegate: trace.Tracer) -> None:
        self.repoint(delegate)

    def repoint(self, delegate: trace.Tracer) -> None:
        """Start every later span on ``delegate``."""
        self.delegate = delegate
        self.start_span = delegate.start_span  # type: ignore[method-assign]

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        # Shadowed per instance by repoint(); kept for the ABC and for readers.
        return self.delegate.start_span(*args, **kwargs)

    start_as_current_span = SdkTracer.start_as_current_span


class KitTracerProvider(trace.TracerProvider):
    """The process-wide provider the kit installs: answers like an SDK provider.

    Args:
        processor: the kit's span processor fan-out, given to every SDK provider built.
        sampler: the first sampler.
        resource: the first resource.
        add_span_processor: what ``add_span_processor`` does (the kit's own function).
        flush: what ``force_flush`` does.
        shutdown: what ``shutdown`` does.
    """

    def __init__(
        self,
        processor: Any,
        sampler: Sampler,
        resource: Resource,
        *,
        add_span_processor: Callable[[Any], None],
        flush: Callable[[float], bool],
        shutdown: Callable[[], None],
    ) -> None:
        # Re-entrant: a signal handler may ask for a tracer while this thread hands one out.
        self._lock = threading.RLock()
        self._tracers: weakref.WeakKeyDictionary[KitTracer, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._processor = processor
        self._ids = KitIdGenerator()
        self._add, self._flush, self._shutdown = add_span_processor, flush, shutdown
        self._sdk = self._build(sampler, resource)
        call_in_forked_children(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held it at the fork: the child's copy would stay
        # locked for ever.
        self._lock = threading.RLock()

    def _build(self, sampler: Sampler, resource: Resource) -> SdkTracerProvider:
        return SdkTracerProvider(
            sampler=sampler,
            resource=resource,
            id_generator=self._ids,
            # The kit's fan-out is the provider's processor: no second fan-out per span.
            active_span_processor=self._processor,
            shutdown_on_exit=False,  # the kit's own exit hook flushes, bounded
        )

    def configure(self, sampler: Sampler, resource: Resource | None = None) -> None:
        """From now on, spans are sampled by ``sampler`` and carry ``resource`` (default: the
        current one), on every tracer handed out so far too."""
        sdk = self._build(sampler, self._sdk.resource if resource is None else resource)
        with self._lock:
            self._sdk = sdk
            for tracer, (args, kwargs) in list(self._tracers.items()):
                tracer.repoint(sdk.get_tracer(*args, **kwargs))

    def turn_off(self) -> None:
        """Sample nothing (every span non-recording) until :meth:`configure` is called again."""
        if self._sdk.sampler is not ALWAYS_OFF:
            self.configure(ALWAYS_OFF)

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        """A tracer for the instrumentation scope given as to ``TracerProvider.get_tracer``."""
        with self._lock:
            tracer = KitTracer(self._sdk.get_tracer(*args, **kwargs))
            self._tracers[tracer] = (args, kwargs)
        return tracer

    @property
    def resource(self) -> Resource:
        """The resource of the current configuration."""
        return self._sdk.resource

    @property
    def sampler(self) -> Sampler:
        """The sampler of the current configuration (``AlwaysOffSampler`` while tracing is off)."""
        return self._sdk.sampler

    @property
    def id_generator(self) -> IdGenerator:
        """The kit's id generator, of its own entropy (see :mod:`.ids`)."""
        return self._ids

    def add_span_processor(self, span_processor: Any) -> None:
        """Attach a processor to every span of this provider, as the SDK provider's method."""
        self._add(span_processor)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every finished span now; True when every processor flushed in time."""
        return self._flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Flush and stop exporting, as :func:`~tinyllm_instrument.telemetry.shutdown_telemetry`."""
        self._shutdown()
