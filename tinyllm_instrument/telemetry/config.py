"""TelemetryConfig: what tracing does, validated when made; errors name the field and value."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .. import _config
from ..redaction import REDACTED, get_redaction_policy

__all__ = [
    "DEFAULT_OTLP_GRPC_ENDPOINT",
    "DEFAULT_OTLP_HTTP_ENDPOINT",
    "ENV_OTLP_ENDPOINT",
    "EXPORTERS",
    "ON_QUEUE_FULL",
    "OTLP_PROTOCOLS",
    "SDK_LIMIT_VARIABLES",
    "TelemetryConfig",
    "check_sdk_environment",
    "sdk_error_line",
]


#: Allowed values of ``TelemetryConfig.exporter``.
EXPORTERS = ("console", "otlp", "none", "tree")
#: Allowed values of ``TelemetryConfig.otlp_protocol``.
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
#: The standard OpenTelemetry variable for the collector's base URL; the default of
#: ``otlp_endpoint``.
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
#: Default collector for OTLP/gRPC when neither ``otlp_endpoint`` nor the env var is set (standard
#: port).
DEFAULT_OTLP_GRPC_ENDPOINT = "http://localhost:4317"
#: Default collector for OTLP/HTTP when neither ``otlp_endpoint`` nor the env var is set (standard
#: port).
DEFAULT_OTLP_HTTP_ENDPOINT = "http://localhost:4318"
_HTTP_TRACES_PATH = "/v1/traces"
#: Allowed values of ``TelemetryConfig.on_queue_full``.
ON_QUEUE_FULL = ("block", "drop", "export_inline")


#: Characters of a value shown at most in an error message.
_SHOWN_MAX = 200


def _shown(value: object) -> str:
    """``repr(value)`` for an error message, with anything secret-shaped redacted, cut short.

    Error messages end up in logs and terminals; a password in an endpoint URL or a key pasted
    into the wrong field must not be echoed back.
    """
    try:
        text = get_redaction_policy().redact_text(repr(value))
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


#: The OpenTelemetry SDK's span limits, read from the environment when ``opentelemetry.sdk.trace``
#: is imported and when a provider is built: each a non-negative integer, or "unset" (no limit).
SDK_LIMIT_VARIABLES = (
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
)
_LIMIT_ALLOWED = "must be a non-negative integer (or 'unset' for no limit)"
# The SDK's own message for the same mistake, as raised from SpanLimits.
_SDK_LIMIT_ERROR = re.compile(r"^(OTEL_[A-Z_]+) must be a non-negative integer but got (.*)$")


def check_sdk_environment() -> None:
    """Check the ``OTEL_*`` variables that the SDK would reject when imported or used.

    Raises:
        ValueError: one line naming the variable and what it may hold, e.g.
            ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT='abc': must be a non-negative integer (or 'unset'
            for no limit)``.

    Example:
        >>> check_sdk_environment()  # nothing set, nothing wrong
    """
    for name in SDK_LIMIT_VARIABLES:
        raw = _config.env_str(name)
        if raw is None or raw.lower() == "unset":
            continue
        try:
            ok = int(raw) >= 0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{name}={_shown(raw)}: {_LIMIT_ALLOWED}")


def sdk_error_line(exc: Exception) -> str:
    """One line for a ValueError the SDK raised about its environment, in the kit's words."""
    text = str(exc).strip()
    match = _SDK_LIMIT_ERROR.match(text)
    if match is not None:
        return f"{match.group(1)}={_shown(match.group(2))}: {_LIMIT_ALLOWED}"
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"the OpenTelemetry SDK refused its environment: {_shown(first)[1:-1]}"


def _reject(field_name: str, value: object, allowed: str) -> ValueError:
    return ValueError(
        f"TelemetryConfig.{field_name}={_shown(value)} is invalid; allowed: {allowed}"
    )


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _reject(name, value, "True or False")


def _check_seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _reject(name, value, "a number of seconds greater than 0")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _reject(name, value, "a whole number of spans, 1 or more")


def _check_str_mapping(name: str, value: object, *, secret_values: bool) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"TelemetryConfig.{name} must be a dict or None, not {type(value).__name__}"
        )
    out: dict[str, Any] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"TelemetryConfig.{name} has key {key!r}; keys must be non-empty strings"
            )
        if secret_values:
            # Headers carry credentials: the message names the key, never the value.
            if not isinstance(val, str):
                raise ValueError(
                    f"TelemetryConfig.{name}[{key!r}] must be a string, not {type(val).__name__}"
                )
        elif not _is_attribute_value(val):
            raise ValueError(
                f"TelemetryConfig.{name}[{key!r}]={val!r} is invalid; allowed: str, bool, int, "
                "float or a list of one of those"
            )
        out[key] = val
    return out


def _is_attribute_value(value: object) -> bool:
    if isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (str, bool, int, float)) for v in value)
    return False


def _validate_base_url(url: str, source: str) -> str:
    """Check that ``url`` is http(s)://host[:port][/path]; return it without a trailing slash."""
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(
            f"{source}={_shown(url)} is not a valid OTLP endpoint; allowed: a base URL such as "
            f"{DEFAULT_OTLP_GRPC_ENDPOINT!r} (grpc) or {DEFAULT_OTLP_HTTP_ENDPOINT!r} "
            "(http/protobuf)"
        )
    return url.strip().rstrip("/")


@dataclass(frozen=True, repr=False)
class TelemetryConfig:
    """How the kit traces; validated at construction (ValueError naming field, value, allowed).

    Args:
        enable_tracing: create and export spans. False (the default) leaves every span
            non-recording.
        service_name: ``service.name`` of the resource; it wins over ``resource_attributes``.
        exporter: "console" (JSON to stdout), "otlp" (a collector), "tree" (each trace printed
            to stdout as a tree of its spans when its root span ends, see
            :class:`~tinyllm_instrument.tree.TreeSpanExporter`) or "none" (spans are created, for
            log correlation, but not exported).
        otlp_endpoint: the collector's base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT``: for
            http/protobuf ``/v1/traces`` is appended (unless already there); for grpc host and
            port are used.
            Default: the ``OTEL_EXPORTER_OTLP_ENDPOINT`` env var, then ``http://localhost:4317``
            (grpc) or ``http://localhost:4318`` (http/protobuf), the standard OTLP ports.
        otlp_protocol: "grpc" or "http/protobuf".
        otlp_headers: extra headers (gRPC metadata) sent with every export, e.g. an API key.
        sampling_rate: fraction of new traces kept, 0..1; child spans follow their parent's
            decision.
        resource_attributes: extra resource attributes (``deployment.environment``...).
        propagate_to_threads: let work started in threads join the caller's trace (used by
            ``observe``).
        flush_on_sigterm: when the app has no SIGTERM handler of its own, one SIGTERM unwinds
            the main thread like Ctrl-C does, flushes, then ends the process by the signal,
            whatever threads run (see :mod:`.lifecycle`); the default SIGTERM would kill the
            process with spans unsent.
        export_timeout: seconds one export may take, retries included.
        shutdown_timeout: seconds :func:`shutdown_telemetry` waits for the last spans by default.
        max_queue_size: finished spans waiting for export, at most; the bound on the memory the
            pipeline holds when the collector is slow or down.
        max_export_batch_size: spans per export request. The export thread is woken as soon as
            this many are queued, not only when ``schedule_delay`` elapses. At most
            ``max_queue_size``.
        schedule_delay: seconds the export thread waits at most before sending what is queued.
        on_queue_full: what ending a span does when the queue is full. "block" (the default)
            waits until the export thread has made room, at most ``block_timeout``; "drop" drops
            the span at once; "export_inline" has the calling thread export a batch itself (it
            pays the export, up to ``export_timeout``, while the collector answers slowly). Either
            waiting mode stops waiting, and drops, once an export has failed or a wait has timed
            out, until an export succeeds again: a collector that is down costs the app at most
            one ``block_timeout``. Every dropped span is counted in
            ``tinyllm_spans_dropped_total{reason}``.
        block_timeout: seconds one span end may wait for room ("block", "export_inline").

    ``repr()`` shows the header names but never their values, and the endpoint and resource
    attributes through the kit's redaction policy: a config may be logged.

    Raises:
        ValueError: a field holds a value outside what is allowed.

    Example:
        >>> cfg = TelemetryConfig(enable_tracing=True, exporter="otlp",
        ...     otlp_endpoint="http://collector:4318", otlp_protocol="http/protobuf")
        >>> cfg.resolved_endpoint()
        'http://collector:4318/v1/traces'
    """

    enable_tracing: bool = False
    service_name: str = "tinyllm"
    exporter: str = "console"
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    otlp_headers: Mapping[str, str] | None = None
    sampling_rate: float = 1.0
    resource_attributes: Mapping[str, Any] | None = None
    propagate_to_threads: bool = True
    flush_on_sigterm: bool = True
    export_timeout: float = 10.0
    shutdown_timeout: float = 5.0
    max_queue_size: int = 4096
    max_export_batch_size: int = 512
    schedule_delay: float = 1.0
    on_queue_full: str = "block"
    block_timeout: float = 0.5
    _endpoint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_bool("enable_tracing", self.enable_tracing)
        _check_bool("propagate_to_threads", self.propagate_to_threads)
        _check_bool("flush_on_sigterm", self.flush_on_sigterm)
        if not isinstance(self.service_name, str) or not self.service_name.strip():
            raise _reject("service_name", self.service_name, "a non-empty string")
        if self.exporter not in EXPORTERS:
            raise _reject("exporter", self.exporter, ", ".join(repr(e) for e in EXPORTERS))
        if self.otlp_protocol not in OTLP_PROTOCOLS:
            raise _reject(
                "otlp_protocol", self.otlp_protocol, ", ".join(repr(p) for p in OTLP_PROTOCOLS)
            )
        rate = self.sampling_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not 0.0 <= rate <= 1.0
        ):
            raise _reject("sampling_rate", rate, "a number from 0.0 to 1.0")
        _check_seconds("export_timeout", self.export_timeout)
        _check_seconds("shutdown_timeout", self.shutdown_timeout)
        _check_seconds("schedule_delay", self.schedule_delay)
        _check_seconds("block_timeout", self.block_timeout)
        _check_count("max_queue_size", self.max_queue_size)
        _check_count("max_export_batch_size", self.max_export_batch_size)
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError(
                f"TelemetryConfig.max_export_batch_size={self.max_export_batch_size!r} is larger "
                f"than max_queue_size={self.max_queue_size!r}; a batch is taken from the queue, "
                "so use a batch size up to the queue size"
            )
        if self.on_queue_full not in ON_QUEUE_FULL:
            raise _reject(
                "on_queue_full", self.on_queue_full, ", ".join(repr(m) for m in ON_QUEUE_FULL)
            )
        if self.otlp_endpoint is not None and not isinstance(self.otlp_endpoint, str):
            raise _reject("otlp_endpoint", self.otlp_endpoint, "a URL string or None")
        headers = _check_str_mapping("otlp_headers", self.otlp_headers, secret_values=True)
        resource = _check_str_mapping(
            "resource_attributes", self.resource_attributes, secret_values=False
        )
        # Read-only copies: a caller mutating its dict later must not change a live configuration.
        object.__setattr__(
            self, "otlp_headers", None if headers is None else MappingProxyType(headers)
        )
        object.__setattr__(
            self, "resource_attributes", None if resource is None else MappingProxyType(resource)
        )
        object.__setattr__(self, "sampling_rate", float(rate))
        # Resolve once, so the endpoint is what the environment said when the config was made. An
        # explicit endpoint is always checked; one from the environment only matters for "otlp".
        try:
            object.__setattr__(self, "_endpoint", self._resolve())
        except ValueError:
            if self.otlp_endpoint is not None or self.exporter == "otlp":
                raise

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            if f.repr:
                shown.append(f"{f.name}={self._shown_field(f.name, getattr(self, f.name))}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @staticmethod
    def _shown_field(name: str, value: Any) -> str:
        if value is None:
            return "None"
        try:
            if name == "otlp_headers":
                # Headers carry credentials whatever their names: show the names only.
                return repr(dict.fromkeys(value, REDACTED))
            policy = get_redaction_policy()
            if name == "resource_attributes":
                value = policy.redact(dict(value))
            return policy.redact_text(repr(value))
        except Exception:  # a repr must not raise, and must not fall back to the raw value
            return "<?>"

    def _resolve(self) -> str:
        if self.otlp_endpoint is not None:
            base = _validate_base_url(self.otlp_endpoint, "TelemetryConfig.otlp_endpoint")
        else:
            from_env = _config.env_str(ENV_OTLP_ENDPOINT)
            if from_env is not None:
                base = _validate_base_url(from_env, ENV_OTLP_ENDPOINT)
            elif self.otlp_protocol == "grpc":
                base = DEFAULT_OTLP_GRPC_ENDPOINT
            else:
                base = DEFAULT_OTLP_HTTP_ENDPOINT
        if self.otlp_protocol == "http/protobuf" and not base.endswith(_HTTP_TRACES_PATH):
            base += _HTTP_TRACES_PATH
        return base

    def resolved_endpoint(self) -> str:
        """The URL the OTLP exporter sends to: with ``/v1/traces`` for http/protobuf.

        Raises:
            ValueError: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the default used) is not a valid URL.
        """
        return self._endpoint if self._endpoint is not None else self._resolve()
