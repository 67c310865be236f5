"""Setup: keep every event (DEBUG included) in memory as DOC_EVENTS, for a check to read."""

from tinyllm_instrument.events import BufferedEventHandler, get_event_emitter

DOC_EVENTS = get_event_emitter().add_handler(BufferedEventHandler(max_size=10_000))
