"""Context across boundaries: the thread and pool patches are contained, and incoming headers are
bounded in what they hold and in what they make the kit log."""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import wrapt
from opentelemetry import baggage, trace

from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    configure_telemetry,
    extract_context,
    get_current_trace_id,
    reset_telemetry,
    trace_span,
)

ORIGINAL_START = vars(threading.Thread)["start"]
ORIGINAL_SUBMIT = vars(ThreadPoolExecutor)["submit"]


@pytest.fixture(autouse=True)
def _restore_thread_patches() -> Iterator[None]:
    yield
    reset_telemetry()
    threading.Thread.start = ORIGINAL_START  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = ORIGINAL_SUBMIT  # type: ignore[method-assign]


def _kit_on() -> None:
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))


def _kit_off() -> None:
    configure_telemetry(
        TelemetryConfig(enable_tracing=True, exporter="none", propagate_to_threads=False)
    )


# --------------------------------------------------------------------------------------------------
# another library's patches of Thread.start and ThreadPoolExecutor.submit
# --------------------------------------------------------------------------------------------------


PROBE = "probe"


def _counts(args: tuple[Any, ...]) -> int:
    """1 for a call made by the probes below, 0 for threads other code starts meanwhile."""
    target = args[0] if args else None
    if isinstance(target, threading.Thread):
        return int(target.name == PROBE)
    return int(isinstance(target, ThreadPoolExecutor) and target._thread_name_prefix == PROBE)


class ClosurePatch:
    """How many libraries patch: replace the attribute with a closure over what was there."""

    def __init__(self, owner: type, name: str) -> None:
        self.owner, self.name, self.calls = owner, name, 0
        self.saved = vars(owner)[name]
        saved = self.saved

        @functools.wraps(saved)
        def patched(*args: Any, **kwargs: Any) -> Any:
            self.calls += _counts(args)
            return saved(*args, **kwargs)

        self.patched = patched
        setattr(owner, name, patched)

    def remove(self) -> None:
        setattr(self.owner, self.name, self.saved)


class WraptPatch:
    """How OpenTelemetry's contrib instrumentations patch: a wrapt FunctionWrapper."""

    def __init__(self, owner: type, name: str) -> None:
        self.owner, self.name, self.calls = owner, name, 0

        def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            self.calls += _counts((instance, *args))
            return wrapped(*args, **kwargs)

        self.saved = vars(owner)[name]
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        self.patched = vars(owner)[name]

    def remove(self) -> None:
        setattr(self.owner, self.name, self.saved)


PATCHES = [ClosurePatch, WraptPatch]


def _trace_seen_in_thread() -> str | None:
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(get_current_trace_id()), name=PROBE)
    thread.start()
    thread.join()
    return seen[0]


def _trace_seen_in_pool() -> str | None:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=PROBE) as pool:
        return pool.submit(get_current_trace_id).result()


@pytest.mark.parametrize("patch_class", PATCHES, ids=["closure", "wrapt"])
@pytest.mark.parametrize(
    ("owner", "name", "probe"),
    [
        (threading.Thread, "start", _trace_seen_in_thread),
        (ThreadPoolExecutor, "submit", _trace_seen_in_pool),
    ],
    ids=["Thread.start", "ThreadPoolExecutor.submit"],
)
def test_a_patch_applied_after_the_kit_survives_the_kit_uninstalling(
    patch_class, owner, name, probe
):
    _kit_on()
    theirs = patch_class(owner, name)
    with trace_span("outer"):
        outer = get_current_trace_id()
        assert probe() == outer  # both layers work: the kit carries the trace, theirs counts
    assert theirs.calls == 1
    _kit_off()
    assert vars(owner)[name] is theirs.patched  # not clobbered
    with trace_span("outer"):
        assert probe() is None  # the kit's layer is gone in effect
    assert theirs.calls == 2  # theirs still runs
    # The kit switching on again works through the same chain, without a second layer.
    _kit_on()
    with trace_span("again"):
        assert probe() == get_current_trace_id()
    assert theirs.calls == 3
    _kit_off()
    theirs.remove()


@pytest.mark.parametrize("patch_class", PATCHES, ids=["closure", "wrapt"])
@pytest.mark.parametrize(
    ("owner", "name", "probe"),
    [
        (threading.Thread, "start", _trace_seen_in_thread),
        (ThreadPoolExecutor, "submit", _trace_seen_in_pool),
    ],
    ids=["Thread.start", "ThreadPoolExecutor.submit"],
)
def test_the_kit_uninstalling_restores_exactly_the_patch_it_found(patch_class, owner, name, probe):
    theirs = patch_class(owner, name)
    _kit_on()
    assert vars(owner)[name] is not theirs.patched
    with trace_span("outer"):
        assert probe() == get_current_trace_id()
    _kit_off()
    assert vars(owner)[name] is theirs.patched
    with trace_span("outer"):
        assert probe() is None
    assert theirs.calls == 2
    theirs.remove()
    assert vars(owner)[name] is theirs.saved


def test_uninstalling_restores_the_originals_when_nobody_else_patched():
    _kit_on()
    assert vars(threading.Thread)["start"] is not ORIGINAL_START
    _kit_off()
    assert vars(threading.Thread)["start"] is ORIGINAL_START
    assert vars(ThreadPoolExecutor)["submit"] is ORIGINAL_SUBMIT


def test_a_thread_subclass_calling_super_start_still_joins_the_trace():
    _kit_on()
    seen: list[str | None] = []

    class Worker(threading.Thread):
        def start(self) -> None:
            super().start()

        def run(self) -> None:
            seen.append(get_current_trace_id())

    with trace_span("outer"):
        worker = Worker()
        worker.start()
        worker.join()
        assert seen == [get_current_trace_id()]


# --------------------------------------------------------------------------------------------------
# incoming headers: bounded in what is accepted and in what is logged
# --------------------------------------------------------------------------------------------------

MB = 1024 * 1024
TRACEPARENT = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
#: What "small" means for one log line about a header.
LINE_BOUND = 400


@pytest.fixture
def all_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, DEBUG and up (read ``.records`` in the test phase)."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def _trace_id(ctx: Any) -> int:
    return trace.get_current_span(ctx).get_span_context().trace_id


HUGE_HEADERS = {
    "one_huge_member": {"baggage": "k=" + "v" * MB},
    "huge_without_separators": {"baggage": "x" * MB},
    "many_members": {"baggage": ",".join(f"k{i}=v{i}" for i in range(MB // 10))},
    "valid_then_huge": {"baggage": "tenant=acme," + "junk" * (MB // 4)},
    "invalid_members": {"baggage": ",".join(["bad key=v" + "x" * 3000] * 350)},
    "huge_non_ascii": {"baggage": "é" * (MB // 2)},
    "huge_traceparent": {"traceparent": TRACEPARENT + "-" + "f" * MB},
    "huge_tracestate": {"traceparent": TRACEPARENT, "tracestate": ",".join(["a=b"] * (MB // 4))},
    "huge_tracestate_member": {"traceparent": TRACEPARENT, "tracestate": "k=" + "v" * MB},
}


@pytest.mark.parametrize("headers", list(HUGE_HEADERS.values()), ids=list(HUGE_HEADERS))
@pytest.mark.parametrize("repeat", [1, 3])
def test_a_huge_header_never_becomes_a_huge_log_line_nor_an_error(all_records, headers, repeat):
    for _ in range(repeat):
        ctx = extract_context(headers)
        assert ctx is not None
    records = all_records.records
    longest = max((len(r.getMessage()) for r in records), default=0)
    assert longest <= LINE_BOUND, [r.getMessage()[:200] for r in records]
    assert len(records) <= 2  # one report per kind, not one per extract or per member


def test_valid_parts_of_oversized_headers_are_still_extracted(all_records):
    ctx = extract_context(HUGE_HEADERS["valid_then_huge"])
    assert baggage.get_baggage("tenant", ctx) == "acme"
    ctx = extract_context(HUGE_HEADERS["many_members"])
    kept = baggage.get_all(ctx)
    assert kept["k0"] == "v0"
    assert 0 < len(kept) <= 180
    assert sum(len(k) + len(str(v)) + 2 for k, v in kept.items()) <= 8192
    ctx = extract_context(HUGE_HEADERS["huge_tracestate"])
    span_context = trace.get_current_span(ctx).get_span_context()
    assert span_context.trace_id == int("ab" * 16, 16)
    assert len(span_context.trace_state) <= 32
    assert _trace_id(extract_context(HUGE_HEADERS["huge_tracestate_member"])) == int("ab" * 16, 16)


def test_headers_with_nothing_valid_give_an_empty_context(all_records):
    for name in ("one_huge_member", "huge_without_separators", "huge_non_ascii"):
        assert baggage.get_all(extract_context(HUGE_HEADERS[name])) == {}
    assert _trace_id(extract_context(HUGE_HEADERS["huge_traceparent"])) == 0


def test_a_normal_header_is_extracted_unchanged_and_logs_nothing(all_records):
    ctx = extract_context(
        {"traceparent": TRACEPARENT, "tracestate": "vendor=x,other=y", "baggage": "a=1,b=two"}
    )
    span_context = trace.get_current_span(ctx).get_span_context()
    assert span_context.trace_id == int("ab" * 16, 16)
    assert dict(span_context.trace_state) == {"vendor": "x", "other": "y"}
    assert baggage.get_all(ctx) == {"a": "1", "b": "two"}
    assert [r for r in all_records.records if r.levelno >= logging.WARNING] == []


def test_header_values_given_as_lists_are_read_like_the_default_getter():
    ctx = extract_context({"traceparent": [TRACEPARENT], "baggage": ["a=1", "b=2"]})  # type: ignore[dict-item]
    assert _trace_id(ctx) == int("ab" * 16, 16)
    assert baggage.get_baggage("a", ctx) == "1"


def test_a_hostile_carrier_gives_an_empty_context_not_an_error():
    class Hostile(dict):  # type: ignore[type-arg]
        def get(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("carrier exploded")

    ctx = extract_context(Hostile())
    assert _trace_id(ctx) == 0
    assert contextvars.copy_context() is not None
