"""Installed OpenTelemetry instrumentations, loaded under ``run`` as ``opentelemetry-instrument``
loads them: every ``opentelemetry_instrumentor`` entry point, on the kit's tracer provider.

What each entry point became (loaded, disabled, skipped for a dependency conflict, failed) is kept
for ``--print-plan``. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (comma-separated entry point names,
or ``*``) is honoured as OpenTelemetry honours it; the kit's own entry point is never loaded here
(``run`` applies the patterns itself). A library an instrumentation is for that is not installed
is a dependency conflict: a note, as OpenTelemetry logs it at debug level. An instrumentation that
fails to load or to instrument is reported once (stage ``instrument``), counted and skipped: the
program runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from . import _config
from ._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from .redaction import safe_text

__all__ = [
    "ENV_DISABLED",
    "ENV_OTEL_INSTRUMENTATIONS",
    "ENTRY_POINT_GROUP",
    "instrumentation_plan",
    "load_instrumentations",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

#: The entry point group of OpenTelemetry instrumentations.
ENTRY_POINT_GROUP = "opentelemetry_instrumentor"
#: OpenTelemetry's own variable: entry point names not to load (``*``: none at all).
ENV_DISABLED = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
#: ``--otel-instrumentations/--no-otel-instrumentations``: "0" turns the loading off.
ENV_OTEL_INSTRUMENTATIONS = _config.ENV_PREFIX + "OTEL_INSTRUMENTATIONS"
#: The kit's own distribution: its entry point applies patterns, which ``run`` does itself.
_OWN_MODULE = "tinyllm_instrument"

_LOCK = threading.Lock()
_PLAN: dict[str, str] = {}  # entry point name -> what became of it
_LOADED: list[Any] = []  # the instrumentor instances, kept alive for the process


def _report_failure(name: str, exc: Exception) -> None:
    """One warning naming the instrumentation (each is loaded once), counted as the kit's own
    failures are (``report_internal_error`` logs once per error type: a second broken
    instrumentation would go unsaid)."""
    try:
        from .metrics import get_metrics_collector

        get_metrics_collector().instrumentation_errors.labels(Stage.INSTRUMENT).inc()
        _log.warning(
            "tinyllm_instrument: OpenTelemetry instrumentation %r failed and is skipped (the "
            "program runs without it): %s: %s",
            name,
            type(exc).__name__,
            safe_text(exc),
        )
    except Exception as kit_exc:  # pragma: no cover - the last resort reports itself
        report_internal_error(Stage.INSTRUMENT, kit_exc)


def _disabled(env: str | None) -> set[str]:
    return {name.strip() for name in (env or "").split(",") if name.strip()}


def _entry_points() -> Iterable[Any]:
    from opentelemetry.util._importlib_metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


def load_instrumentations(tracer_provider: Any = None) -> dict[str, str]:
    """Load every installed OpenTelemetry instrumentation, once per process.

    Args:
        tracer_provider: the provider their spans go to; default the global one (the kit's,
            once ``configure_telemetry`` ran).

    Returns:
        What became of each entry point, by name: ``"loaded"``, ``"disabled by
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"``, ``"skipped: <dependency conflict>"`` or
        ``"failed: <error type>; reported once"`` (see :func:`instrumentation_plan`).

    Never raises for an instrumentation's failure.

    Example:
        >>> load_instrumentations()
        {'httpx': 'loaded', 'httpx2': 'loaded', 'requests': 'skipped: requests not installed'}
    """
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    disabled = _disabled(os.environ.get(ENV_DISABLED))
    with _LOCK:
        if _PLAN:
            return dict(_PLAN)
        for entry_point in _entry_points():
            name = entry_point.name
            if name in _PLAN:
                continue
            value = str(getattr(entry_point, "value", ""))
            if value.split(":", 1)[0].split(".", 1)[0] == _OWN_MODULE:
                continue  # the kit's own: run applies its patterns already
            if "*" in disabled or name in disabled:
                _PLAN[name] = f"disabled by {ENV_DISABLED}"
                continue
            try:
                dist = getattr(entry_point, "dist", None)
                conflict = get_dist_dependency_conflicts(dist) if dist is not None else None
                if conflict is not None:
                    _PLAN[name] = f"skipped: {conflict}"
                    continue
                instrumentor = entry_point.load()()
                instrumentor.instrument(tracer_provider=tracer_provider, skip_dep_check=True)
                _LOADED.append(instrumentor)
                _PLAN[name] = "loaded"
            except ModuleNotFoundError as exc:  # its library is not installed
                _PLAN[name] = f"skipped: {exc.name or exc} not installed"
            except Exception as exc:  # one broken instrumentation must not stop the program
                _PLAN[name] = f"failed: {type(exc).__name__}; reported once"
                _report_failure(name, exc)
        return dict(_PLAN)


def instrumentation_plan() -> dict[str, str]:
    """What :func:`load_instrumentations` did with each entry point (empty before it ran)."""
    with _LOCK:
        return dict(_PLAN)


def reset_instrumentations() -> None:
    """Uninstrument what was loaded and forget the plan (for tests)."""
    with _LOCK:
        loaded, _LOADED[:] = list(_LOADED), []
        _PLAN.clear()
    for instrumentor in loaded:
        try:
            instrumentor.uninstrument()
        except Exception as exc:
            report_internal_error(Stage.UNINSTRUMENT, exc)
