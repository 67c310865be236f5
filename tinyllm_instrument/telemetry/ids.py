"""Trace and span ids from the kit's own entropy, never from the app's (possibly seeded) ``random``.

OpenTelemetry's default ``RandomIdGenerator`` draws from the global ``random`` module, so a program
that calls ``random.seed(42)`` for its own reproducibility gets the same trace ids on every run
(open-telemetry/opentelemetry-python#4376), and the traces of two runs collide in the backend.
"""

from __future__ import annotations

import random

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator

from .._atfork import call_in_forked_children

__all__ = ["KitIdGenerator"]


class KitIdGenerator(IdGenerator):
    """Random ids from a ``random.Random`` of the kit's own, seeded from ``os.urandom``.

    Re-seeded in a forked child, so parent and child never draw the same sequence. A draw costs
    what the default generator's does (one ``getrandbits`` of a Mersenne Twister, in C); an
    ``os.urandom`` call per id would cost a system call per span.

    Example:
        >>> ids = KitIdGenerator()
        >>> ids.generate_trace_id() != ids.generate_trace_id()
        True
    """

    def __init__(self) -> None:
        self._random = random.Random()  # no seed: the OS's entropy
        self._bits = self._random.getrandbits
        call_in_forked_children(self.reseed)

    def reseed(self) -> None:
        """Draw a new seed from the OS (done in every forked child)."""
        self._random.seed()

    def generate_span_id(self) -> int:
        span_id = self._bits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = self._bits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = self._bits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = self._bits(128)
        return trace_id
