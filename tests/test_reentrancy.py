"""A signal handler that records telemetry while its thread holds one of the kit's locks.

Python runs a signal handler in the main thread, between two bytecodes of whatever that thread was
doing, so an observed function called from a handler can ask for a lock the interrupted code
holds. With a plain lock the process hangs forever. Each case below runs in a fresh interpreter:
the main thread takes the lock (as the kit's own code does) and raises a real SIGUSR1 inside it;
the handler records through the public API. The process must finish, with the handler's data
recorded exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="SIGUSR1 exists on POSIX systems only"
)

PROGRAM = """
import signal
{setup}

ran = []

def on_signal(signum, frame):
{handler}
    ran.append(signum)

signal.signal(signal.SIGUSR1, on_signal)
with {lock}:
    signal.raise_signal(signal.SIGUSR1)  # the handler runs here, with the lock held
    assert ran, "the handler did not run inside the lock"
{check}
print("ok")
"""

CASES = {
    "metrics cardinality guard": (
        "from tinyllm_instrument.metrics import MetricsCollector\nc = MetricsCollector()",
        "c.node_errors._lock",
        'c.increment_node_error_count("router", "qa", "Timeout")',
        "labels = {'node': 'router', 'graph': 'qa', 'error_type': 'Timeout'}\n"
        "assert c.registry.get_sample_value('tinyllm_node_errors_total', labels) == 1",
    ),
    "metrics collector creation": (
        "from tinyllm_instrument.metrics import collector as mc, get_metrics_collector",
        "mc._collector_lock",
        'get_metrics_collector().increment_cache_hit("memory")',
        "value = get_metrics_collector().registry.get_sample_value(\n"
        "    'tinyllm_cache_hits_total', {'cache_type': 'memory'})\n"
        "assert value == 1, value",
    ),
    "event emitter creation": (
        "from tinyllm_instrument import events",
        "events._emitter_lock",
        "events.emit_event('deploy.done', 'system', 'warning', 'from a handler')",
        "from tinyllm_instrument.metrics import get_metrics_collector\n"
        "value = get_metrics_collector().registry.get_sample_value(\n"
        "    'tinyllm_events_total', {'category': 'system', 'severity': 'warning'})\n"
        "assert value == 1, value",
    ),
    "event emitter": (
        "from tinyllm_instrument.events import BufferedEventHandler, Event, get_event_emitter\n"
        "emitter = get_event_emitter()\n"
        "buffer = BufferedEventHandler()",
        "emitter._lock",
        "emitter.add_handler(buffer)\nemitter.emit(Event('a.b', 'system', 'info', 'm'))",
        "assert len(buffer) == 1",
    ),
    "buffered event handler": (
        "from tinyllm_instrument.events import BufferedEventHandler, emit_event, "
        "get_event_emitter\n"
        "buffer = get_event_emitter().add_handler(BufferedEventHandler())",
        "buffer._lock",
        "emit_event('a.b', 'system', 'info', 'from a handler')",
        "assert [e.message for e in buffer.get_events()] == ['from a handler']",
    ),
    "queue size totals": (
        "import queue\n"
        "from tinyllm_instrument import observe_queue, queues\n"
        "from tinyllm_instrument.metrics import get_metrics_collector\n"
        "jobs = observe_queue(queue.Queue())",
        "queues._totals_lock",
        "jobs.put('job')",
        "value = get_metrics_collector().registry.get_sample_value(\n"
        "    'tinyllm_queue_size', {'priority': 'default'})\n"
        "assert value == 1, value",
    ),
}


def run_program(program: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYLLM_INSTRUMENT_")}
    try:
        return subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=30
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"deadlock: the program hung with the lock held\n{exc.stderr or ''}")


@pytest.mark.parametrize("case", list(CASES))
def test_a_signal_handler_recording_while_the_lock_is_held_does_not_deadlock(case):
    setup, lock, handler, check = CASES[case]
    program = PROGRAM.format(
        setup=setup,
        lock=lock,
        handler=textwrap.indent(handler, "    "),
        check=check,
    )
    out = run_program(program)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"


# The lru_cache case goes through the public API alone: instrument_cache reads cache_info() with
# its lock held, so a cache whose cache_info() is interrupted by a signal is the real situation.
LRU_PROGRAM = """
import functools, signal
from tinyllm_instrument import instrument_cache
from tinyllm_instrument.metrics import get_metrics_collector

Info = functools._CacheInfo

class SlowInfoCache:
    \"\"\"A cache function in lru_cache's shape; a signal arrives while cache_info() runs.\"\"\"

    def __init__(self):
        self.hits = self.misses = 0
        self.interrupt = False

    def __call__(self, key):
        self.misses += 1
        return key

    def cache_info(self):
        info = Info(self.hits, self.misses, None, 0)
        if self.interrupt:
            self.interrupt = False
            signal.raise_signal(signal.SIGUSR1)
        return info

raw = SlowInfoCache()
cached = instrument_cache(raw, cache_type="slow")

def on_signal(signum, frame):
    cached("from the handler")

signal.signal(signal.SIGUSR1, on_signal)
raw.interrupt = True
cached("first")  # its settle reads cache_info(), which is interrupted by the handler's call
misses = get_metrics_collector().registry.get_sample_value(
    "tinyllm_cache_misses_total", {{"cache_type": "slow"}})
print(raw.misses, misses)
"""


def test_a_signal_handler_calling_an_instrumented_lru_function_inside_its_settle():
    out = run_program(LRU_PROGRAM.format())
    assert out.returncode == 0, out.stderr
    # Two lookups, both counted, neither twice, by the time the outer call returns.
    assert out.stdout == "2 2.0\n"
