"""A child of session_spawner: a span of another tracer, a stdlib log line and an event."""

import logging
import sys

from opentelemetry import trace

from tinyllm_instrument.events import emit_event


def work(word):
    trace.get_tracer("child.other.library").start_span(f"other library span {word}").end()
    logging.getLogger("child.stdlib").warning("child stdlib line %s", word)
    emit_event("child.event", "user", "info", f"child {word}")
    return word.upper()


if __name__ == "__main__":
    print(work(sys.argv[1]))
