"""The ``tinyllm_capture`` pytest fixture, registered through the ``pytest11`` entry point."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import Capture, capture


@pytest.fixture
def tinyllm_capture() -> Iterator[Capture]:
    """Spans, metric samples, log entries and events produced during the test, in memory."""
    with capture() as cap:
        yield cap
