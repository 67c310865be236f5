"""Shared fixtures: every test starts from the kit's pristine process-wide state."""

from __future__ import annotations

import importlib

import pytest
from llm_servers import anthropic_server, openai_server  # noqa: F401 - fixtures for every module
from phoenix_server import phoenix  # noqa: F401 - fixture for every module
from prometheus_client import CollectorRegistry

from tinyllm_instrument import _config, _errors


def _reset_if_present(module: str, func: str) -> None:
    try:
        mod = importlib.import_module(f"tinyllm_instrument.{module}")
    except ImportError:
        return
    reset = getattr(mod, func, None)
    if reset is not None:
        reset()


@pytest.fixture(autouse=True)
def _pristine_kit():
    """Reset every pillar's process-wide state before and after each test."""
    resets = [
        ("events", "reset_event_emitter"),
        ("telemetry", "reset_telemetry"),
        ("logging", "reset_logging"),
        ("logging", "reset_log_sampling"),
        ("metrics", "reset_metrics_collector"),
        ("observe", "reset_observe_settings"),
    ]
    for module, func in resets:
        _reset_if_present(module, func)
    _config.reset()
    _errors.reset_reported()
    yield
    for module, func in resets:
        _reset_if_present(module, func)
    _config.reset()
    _errors.reset_reported()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh prometheus registry, so tests never share time series."""
    return CollectorRegistry()
