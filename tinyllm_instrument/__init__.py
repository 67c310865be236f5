"""tinyllm_instrument: traces, metrics, logs and events for LLM workflow graphs from one decorator."""

from __future__ import annotations

from ._config import configure, is_enabled

__version__ = "0.1.0"

__all__ = sorted(["__version__", "configure", "is_enabled"])
