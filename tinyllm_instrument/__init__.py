"""tinyllm_instrument: traces, metrics, logs and events for LLM workflow graphs from one decorator.

The pillars live in their own modules, named as in the guide: ``tinyllm_instrument.metrics``,
``.logging``, ``.telemetry`` and ``.events``. Importing the package configures nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._config import configure, is_enabled  # noqa: E402
from .cache import instrument_cache  # noqa: E402
from .genai.sessions import using_attributes  # noqa: E402
from .observe import configure_observe, observe, record_usage  # noqa: E402
from .patching import instrument, uninstrument  # noqa: E402
from .queues import observe_queue, unobserve_queue  # noqa: E402

__all__ = [
    "__version__",
    "configure",
    "configure_observe",
    "instrument",
    "instrument_cache",
    "is_enabled",
    "observe",
    "observe_queue",
    "record_usage",
    "uninstrument",
    "unobserve_queue",
    "using_attributes",
]
