"""configure_logging, get_logger, trace correlation, context, sampling, redaction, request logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest
import structlog
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import tinyllm_instrument
from tinyllm_instrument.logging import (
    bind_context,
    bound_context,
    clear_context,
    configure_log_sampling,
    configure_logging,
    default_app_name,
    enrichment_processors,
    get_log_sampling_stats,
    get_logger,
    get_logging_info,
    get_request_logger,
    is_logging_configured,
    reset_log_sampling,
    reset_logging,
    unbind_context,
)
from tinyllm_instrument.redaction import REDACTED, reset_redaction

REQUIRED = ("event", "level", "timestamp", "logger", "app")


def json_lines(text: str) -> list[dict]:
    """Parse every line; a line that is not one JSON object fails the test."""
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def assert_required_fields(line: dict) -> None:
    for key in REQUIRED:
        assert key in line, f"{key} missing from {line}"
    ts = line["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", ts), ts
    parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timezone.utc.utcoffset(None)


@pytest.fixture
def out() -> io.StringIO:
    """JSON logging into a buffer."""
    buf = io.StringIO()
    configure_logging(log_level="INFO", log_format="json", stream=buf)
    return buf


@pytest.fixture
def tracer():
    return TracerProvider().get_tracer("tests")


@pytest.fixture(autouse=True)
def _clean_redaction():
    reset_redaction()
    yield
    reset_redaction()


def kit_handlers() -> list[logging.Handler]:
    return [
        h for h in logging.getLogger().handlers if getattr(h, "tinyllm_instrument_handler", False)
    ]


# ----------------------------------------------------------------------------------------------
# The guide's snippets, with tinyllm renamed tinyllm_instrument
# ----------------------------------------------------------------------------------------------


def test_guide_console_configuration_writes_readable_lines_to_stdout(capsys):
    configure_logging(log_level="INFO", log_format="console")

    get_logger("guide").info("task_started", task_id="abc123")

    text = capsys.readouterr().out
    assert "task_started" in text
    assert "task_id=abc123" in text
    assert f"app={default_app_name()}" in text
    assert "version=" not in text  # the app's version, when configure_logging is given one
    assert text.count("\n") == 1


def test_guide_json_configuration_writes_one_object_per_line_to_the_file(tmp_path, capsys):
    log_file = tmp_path / "var" / "log" / "tinyllm" / "app.log"  # directories do not exist yet

    configure_logging(log_level="INFO", log_format="json", log_file=str(log_file))
    logger = get_logger("guide")
    logger.info("one", n=1)
    logger.warning("two", n=2)

    assert capsys.readouterr().out == ""
    lines = json_lines(log_file.read_text(encoding="utf-8"))
    assert [(line["event"], line["level"], line["n"]) for line in lines] == [
        ("one", "info", 1),
        ("two", "warning", 2),
    ]
    for line in lines:
        assert_required_fields(line)
        assert line["app"] == default_app_name()
        assert "version" not in line
        assert line["logger"] == "guide"


def test_guide_using_loggers_component_appears_on_every_line(out):
    logger = get_logger(__name__, component="executor")

    logger.info("task_started", task_id="abc123")
    logger.info("node_executed", node_id="entry", duration_ms=123, tokens_used=45)

    def risky_operation() -> float:
        return 1 / 0

    try:
        risky_operation()
    except Exception as e:
        logger.error("operation_failed", error=str(e), exc_info=True)

    lines = json_lines(out.getvalue())
    assert [line["event"] for line in lines] == [
        "task_started",
        "node_executed",
        "operation_failed",
    ]
    assert all(line["component"] == "executor" for line in lines)
    assert all(line["logger"] == __name__ for line in lines)
    assert lines[0]["task_id"] == "abc123"
    assert (lines[1]["node_id"], lines[1]["duration_ms"], lines[1]["tokens_used"]) == (
        "entry",
        123,
        45,
    )
    failed = lines[2]
    assert failed["level"] == "error"
    assert failed["error"] == "division by zero"
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in failed["exception"]
    assert "exc_info" not in failed
    for line in lines:
        assert_required_fields(line)


def test_guide_trace_correlation_uses_the_current_span_and_restores_the_outer_one(out, tracer):
    logger = get_logger(__name__)

    logger.info("before")
    with tracer.start_as_current_span("my_operation") as outer:
        logger.info("operation_started")
        with tracer.start_as_current_span("child") as inner:
            logger.info("inside_child")
        logger.info("back_in_outer")
    logger.info("after")

    lines = {line["event"]: line for line in json_lines(out.getvalue())}
    o_ctx, i_ctx = outer.get_span_context(), inner.get_span_context()
    assert lines["operation_started"]["trace_id"] == format(o_ctx.trace_id, "032x")
    assert lines["operation_started"]["span_id"] == format(o_ctx.span_id, "016x")
    assert lines["inside_child"]["span_id"] == format(i_ctx.span_id, "016x")
    assert lines["inside_child"]["trace_id"] == lines["operation_started"]["trace_id"]
    assert lines["back_in_outer"]["span_id"] == format(o_ctx.span_id, "016x")
    for name in ("operation_started", "inside_child", "back_in_outer"):
        assert re.fullmatch(r"[0-9a-f]{32}", lines[name]["trace_id"])
        assert re.fullmatch(r"[0-9a-f]{16}", lines[name]["span_id"])
    for name in ("before", "after"):
        assert "trace_id" not in lines[name] and "span_id" not in lines[name]


def test_trace_ids_are_left_out_for_a_span_that_is_not_recording(out):
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("tests")
    with tracer.start_as_current_span("sampled_out"):
        get_logger("t").info("quiet")
    (line,) = json_lines(out.getvalue())
    assert "trace_id" not in line


def test_trace_ids_reach_standard_library_records_too(out, tracer):
    with tracer.start_as_current_span("op") as span:
        logging.getLogger("thirdparty.client").info("connected")
    (line,) = json_lines(out.getvalue())
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")


def test_guide_context_binding_reaches_the_output_and_unbind_removes_it(out):
    # Defect of the original: bound values never reached the output.
    logger = get_logger(__name__)

    bind_context(request_id="req-123", user_id="user-456")
    logger.info("processing_request")
    unbind_context("request_id", "user_id")
    logger.info("done")

    first, second = json_lines(out.getvalue())
    assert (first["request_id"], first["user_id"]) == ("req-123", "user-456")
    assert "request_id" not in second and "user_id" not in second


def test_clear_context_and_bound_context_restore_exactly(out):
    logger = get_logger("ctx")
    bind_context(a=1, b=2)
    with bound_context(a=10, c=3):
        logger.info("inner")
    logger.info("outer")
    clear_context()
    logger.info("cleared")

    inner, outer, cleared = json_lines(out.getvalue())
    assert (inner["a"], inner["b"], inner["c"]) == (10, 2, 3)
    assert (outer["a"], outer["b"], "c" in outer) == (1, 2, False)
    assert not {"a", "b", "c"} & cleared.keys()


def test_bound_context_reaches_standard_library_records(out):
    bind_context(request_id="req-9")
    logging.getLogger("thirdparty").warning("slow")
    (line,) = json_lines(out.getvalue())
    assert line["request_id"] == "req-9"


def test_asyncio_tasks_have_isolated_context(out):
    logger = get_logger("tasks")

    async def handle(request_id: str, started: asyncio.Event, other: asyncio.Event) -> None:
        bind_context(request_id=request_id)
        started.set()
        await other.wait()  # the other task has bound its own id meanwhile
        logger.info("handled")

    async def main() -> None:
        a, b = asyncio.Event(), asyncio.Event()
        await asyncio.gather(handle("req-a", a, b), handle("req-b", b, a))

    asyncio.run(main())
    lines = json_lines(out.getvalue())
    assert sorted(line["request_id"] for line in lines) == ["req-a", "req-b"]
    assert len(lines) == 2


def test_guide_log_sampling_snippets_each_take_effect(out):
    logger = get_logger("sampling")
    decisions = iter([0.05, 0.5, 0.09, 0.95])

    # Sample 10% of logs (no other flag needed)
    configure_log_sampling(sample_rate=0.1, rng=lambda: next(decisions))
    for i in range(4):
        logger.info("tick", i=i)
    assert get_log_sampling_stats() == {"seen": 4, "kept": 2, "dropped": 2}
    assert [line["i"] for line in json_lines(out.getvalue())] == [0, 2]

    # Or limit to 1000 logs per second
    configure_log_sampling(max_per_second=1000, clock=lambda: 0.0)
    for _ in range(1005):
        logger.info("burst")
    assert get_log_sampling_stats() == {"seen": 1005, "kept": 1000, "dropped": 5}

    # Combine both strategies
    configure_log_sampling(sample_rate=0.5, max_per_second=500, hash_based=True)
    logger.info("combined")
    stats = get_log_sampling_stats()
    assert stats["seen"] == 1 and stats["kept"] + stats["dropped"] == 1
    assert get_logging_info()["sampling"]["hash_based"] is True


def test_sampling_never_drops_warnings_or_errors(out):
    configure_log_sampling(sample_rate=0.0, max_per_second=1, clock=lambda: 0.0)
    logger = get_logger("s")
    for _ in range(3):
        logger.info("chatter")
        logger.warning("careful")
        logger.error("broken")
        logger.critical("down")
    logging.getLogger("lib").error("stdlib error")

    events = [line["event"] for line in json_lines(out.getvalue())]
    assert events.count("careful") == events.count("broken") == events.count("down") == 3
    assert "stdlib error" in events
    assert "chatter" not in events
    assert get_log_sampling_stats() == {"seen": 13, "kept": 10, "dropped": 3}


def test_rate_limit_refills_with_the_clock():
    now = [100.0]
    configure_log_sampling(max_per_second=3, clock=lambda: now[0])
    buf = io.StringIO()
    configure_logging(log_format="json", stream=buf)
    logger = get_logger("rl")
    for i in range(5):
        logger.info("a", i=i)
    now[0] += 1.0
    for i in range(5, 10):
        logger.info("b", i=i)
    now[0] += 0.34  # one more token
    logger.info("c", i=10)

    assert [line["i"] for line in json_lines(buf.getvalue())] == [0, 1, 2, 5, 6, 7, 10]
    assert get_log_sampling_stats() == {"seen": 11, "kept": 7, "dropped": 4}


def test_a_rate_below_one_per_second_still_lets_lines_through(out):
    now = [0.0]
    configure_log_sampling(max_per_second=0.5, clock=lambda: now[0])
    logger = get_logger("slow")
    logger.info("a")
    logger.info("b")
    now[0] += 2.0
    logger.info("c")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["a", "c"]


def test_rate_limit_is_thread_safe(out):
    configure_log_sampling(max_per_second=1000, clock=lambda: 5.0)
    logger = get_logger("threads")
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(500):
            logger.info("t")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert get_log_sampling_stats() == {"seen": 4000, "kept": 1000, "dropped": 3000}
    assert len(json_lines(out.getvalue())) == 1000


def test_hash_based_sampling_keeps_or_drops_a_whole_trace(out, tracer):
    configure_log_sampling(sample_rate=0.5, hash_based=True)
    logger = get_logger("h")
    expected = {}
    for _ in range(40):
        with tracer.start_as_current_span("req") as span:
            trace_id = span.get_span_context().trace_id
            # the same rule as TraceIdRatioBased(0.5): low 64 bits below rate * 2**64
            expected[format(trace_id, "032x")] = (trace_id & (2**64 - 1)) < 2**63
            for step in range(3):
                logger.info("step", step=step)
                logging.getLogger("lib").info("lib step")

    kept = {}
    for line in json_lines(out.getvalue()):
        kept.setdefault(line["trace_id"], []).append(line["event"])
    assert set(kept) == {t for t, keep in expected.items() if keep}
    assert all(len(events) == 6 for events in kept.values())
    assert 0 < len(kept) < 40
    stats = get_log_sampling_stats()
    assert stats["kept"] == 6 * len(kept) and stats["seen"] == 240


def test_hash_based_sampling_without_a_span_keys_on_event_and_bound_context(out):
    configure_log_sampling(sample_rate=0.5, hash_based=True)
    logger = get_logger("h")
    verdicts = {}
    for user in range(30):
        with bound_context(user_id=f"user-{user}"):
            for _ in range(3):
                logger.info("request")
            verdicts[f"user-{user}"] = get_log_sampling_stats()["kept"]

    per_user: dict[str, int] = {}
    for line in json_lines(out.getvalue()):
        per_user[line["user_id"]] = per_user.get(line["user_id"], 0) + 1
    assert set(per_user.values()) == {3}, "a key's lines are kept or dropped together"
    assert 0 < len(per_user) < 30


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sample_rate": 1.5}, ValueError, "sample_rate"),
        ({"sample_rate": -0.1}, ValueError, "sample_rate"),
        ({"sample_rate": float("nan")}, ValueError, "sample_rate"),
        ({"max_per_second": 0}, ValueError, "max_per_second"),
        ({"max_per_second": -5}, ValueError, "max_per_second"),
        ({"max_per_second": float("inf")}, ValueError, "max_per_second"),
        ({"sample_rate": "0.5"}, TypeError, "sample_rate"),
        ({"max_per_second": True}, TypeError, "max_per_second"),
    ],
)
def test_sampling_refuses_out_of_range_values(kwargs, error, message):
    with pytest.raises(error, match=message):
        configure_log_sampling(**kwargs)
    assert get_log_sampling_stats() == {"seen": 0, "kept": 0, "dropped": 0}


def test_sampling_set_before_configure_logging_applies_and_can_be_reset():
    configure_log_sampling(sample_rate=0.0)
    buf = io.StringIO()
    configure_logging(log_format="json", stream=buf)
    get_logger("x").info("dropped")
    assert buf.getvalue() == ""
    assert get_log_sampling_stats()["dropped"] == 1

    reset_log_sampling()
    get_logger("x").info("kept")
    assert [line["event"] for line in json_lines(buf.getvalue())] == ["kept"]
    assert get_log_sampling_stats() == {"seen": 0, "kept": 0, "dropped": 0}


def test_sampling_applies_to_standard_library_records(out):
    configure_log_sampling(sample_rate=0.0)
    logging.getLogger("lib").info("noise")
    assert out.getvalue() == ""
    assert get_log_sampling_stats() == {"seen": 1, "kept": 0, "dropped": 1}


def test_guide_request_logger_redacts_headers_and_body(out):
    req_logger = get_request_logger()

    req_logger.log_request(
        request_id="req-123",
        method="POST",
        path="/api/generate",
        headers={"Authorization": "Bearer sk-abc123"},
        body={"prompt": "Hello", "api_key": "secret"},
    )

    (line,) = json_lines(out.getvalue())
    assert line["event"] == "http_request"
    assert (line["request_id"], line["method"], line["path"]) == (
        "req-123",
        "POST",
        "/api/generate",
    )
    assert line["headers"] == {"Authorization": REDACTED}
    assert line["body"] == {"prompt": "Hello", "api_key": REDACTED}
    assert "sk-abc123" not in out.getvalue()
    assert_required_fields(line)


def test_request_logger_redacts_before_logging_is_configured(capsys):
    get_request_logger().log_request(
        "r", "GET", "/", headers={"X-Api-Key": "k-123"}, body="password=pw1"
    )
    text = capsys.readouterr().out
    assert "k-123" not in text and "pw1" not in text


def test_request_logger_truncates_long_bodies_with_a_marker(out):
    req_logger = get_request_logger(max_body_chars=100)
    req_logger.log_request("r1", "POST", "/a", body="x" * 250)
    req_logger.log_response("r1", 200, body={"text": "y" * 300}, duration_ms=12.5)

    request, response = json_lines(out.getvalue())
    assert request["body"] == "x" * 100 + "...[truncated 150 chars]"
    assert response["body"].startswith('{"text": "yyy')
    assert response["body"].endswith("...[truncated 212 chars]")
    assert len(response["body"]) == 100 + len("...[truncated 212 chars]")
    assert response["duration_ms"] == 12.5


def test_truncation_happens_after_redaction_so_a_cut_secret_cannot_leak(out):
    get_request_logger(max_body_chars=20).log_request(
        "r", "POST", "/", body="a" * 10 + " sk-abcdefghijklmnop"
    )
    (line,) = json_lines(out.getvalue())
    assert "sk-abc" not in line["body"]


@pytest.mark.parametrize("body", [0, "", {}, [], False])
def test_a_falsy_body_is_still_logged(out, body):
    get_request_logger().log_response("r", 204, body=body)
    (line,) = json_lines(out.getvalue())
    assert "body" in line and line["body"] == body


def test_no_body_means_no_body_field(out):
    get_request_logger().log_request("r", "GET", "/health")
    (line,) = json_lines(out.getvalue())
    assert "body" not in line and "headers" not in line


@pytest.mark.parametrize(
    ("status", "level"), [(200, "info"), (302, "info"), (404, "warning"), (503, "error")]
)
def test_response_level_follows_the_status_code(out, status, level):
    get_request_logger().log_response("r", status)
    (line,) = json_lines(out.getvalue())
    assert (line["status_code"], line["level"]) == (status, level)


def test_request_logger_handles_header_pairs_and_bytes_bodies(out):
    get_request_logger().log_request(
        "r",
        "POST",
        "/",
        headers=[(b"cookie", b"sid=abc"), ("accept", "json"), ("set-cookie", "a=b")],
        body=b'{"password": "hunter2"}',
    )
    (line,) = json_lines(out.getvalue())
    assert line["headers"] == [["cookie", REDACTED], ["accept", "json"], ["set-cookie", REDACTED]]
    assert "hunter2" not in line["body"]


# ----------------------------------------------------------------------------------------------
# Requirements and defects from the issue
# ----------------------------------------------------------------------------------------------


def test_every_line_redacts_sensitive_keys_and_nested_values(out):
    get_logger("r").info(
        "call",
        api_key="sk-abcdefghijklmnop",
        max_tokens=256,
        author="Ada",
        prompt="Hello there",
        config={"openai": {"OPENAI_API_KEY": "x"}, "urls": ["postgres://u:pw9@db/x"]},
        note="sent Authorization: Bearer abcdefghijkl",
    )
    (line,) = json_lines(out.getvalue())
    assert line["api_key"] == REDACTED
    assert (line["max_tokens"], line["author"], line["prompt"]) == (256, "Ada", "Hello there")
    assert line["config"] == {
        "openai": {"OPENAI_API_KEY": REDACTED},
        "urls": ["postgres://u:[REDACTED]@db/x"],
    }
    assert line["note"] == "sent Authorization: Bearer [REDACTED]"


def test_secrets_in_event_names_stdlib_args_and_tracebacks_are_redacted(out):
    logger = get_logger("r")
    logger.info("login password=hunter2")
    logging.getLogger("lib").warning("calling with key %s", "sk-abcdefghijklmnop")
    try:
        raise RuntimeError("auth failed for AKIAIOSFODNN7EXAMPLE")
    except RuntimeError:
        logger.exception("boom")
    logger.info("obj", err=RuntimeError("token sk-zyxwvutsrqponm"))

    text = out.getvalue()
    for secret in ("hunter2", "sk-abcdefghijklmnop", "AKIAIOSFODNN7EXAMPLE", "sk-zyxwvutsrqponm"):
        assert secret not in text
    lines = json_lines(text)
    assert lines[0]["event"] == "login password=[REDACTED]"
    assert lines[1]["event"] == "calling with key [REDACTED]"
    assert "RuntimeError: auth failed for [REDACTED]" in lines[2]["exception"]
    assert lines[3]["err"] == "token [REDACTED]"


def test_redaction_extensions_apply_to_log_lines(out):
    from tinyllm_instrument.redaction import configure_redaction

    configure_redaction(extra_keys=["ssn"], extra_patterns=[r"ID-\d{6}"])
    get_logger("r").info("user", ssn="123-45-6789", note="customer ID-123456")
    (line,) = json_lines(out.getvalue())
    assert line["ssn"] == REDACTED and line["note"] == "customer [REDACTED]"


def test_standard_library_records_are_rendered_the_same_way(out):
    logging.getLogger("thirdparty.http").info("GET %s -> %d", "/x", 200, extra={"attempt": 2})
    logging.getLogger(tinyllm_instrument.__name__).warning("kit warning")

    lib, kit = json_lines(out.getvalue())
    assert (lib["event"], lib["logger"], lib["level"], lib["attempt"]) == (
        "GET /x -> 200",
        "thirdparty.http",
        "info",
        2,
    )
    assert (kit["logger"], kit["level"]) == ("tinyllm_instrument", "warning")
    for line in (lib, kit):
        assert_required_fields(line)


def test_positional_arguments_are_formatted_into_the_event(out):
    get_logger("fmt").info("user %s has %d items", "ada", 3)
    (line,) = json_lines(out.getvalue())
    assert line["event"] == "user ada has 3 items"
    assert "positional_args" not in line


def test_standard_library_exception_is_a_traceback_field(out):
    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("lib").exception("lookup failed")
    (line,) = json_lines(out.getvalue())
    assert line["level"] == "error"
    assert "KeyError: 'missing'" in line["exception"]


def test_reconfiguring_takes_effect_for_loggers_created_before(capsys):
    early = get_logger("early", component="executor")
    first, second = io.StringIO(), io.StringIO()

    configure_logging(log_format="json", stream=first)
    early.info("one")
    configure_logging(log_format="json", stream=second, app="other-app", version="9.9")
    early.info("two")
    logging.getLogger("lib").info("three")

    assert [line["event"] for line in json_lines(first.getvalue())] == ["one"]
    two, three = json_lines(second.getvalue())
    assert (two["event"], two["app"], two["version"], two["component"]) == (
        "two",
        "other-app",
        "9.9",
        "executor",
    )
    assert (three["event"], three["app"]) == ("three", "other-app")
    assert len(kit_handlers()) == 1, "handlers must be replaced, never stacked"
    assert capsys.readouterr().out == ""


def test_reconfiguring_switches_format_and_level(capsys):
    logger = get_logger("switch")
    configure_logging(log_level="INFO", log_format="json")
    logger.debug("hidden")
    logger.info("as_json")
    configure_logging(log_level="debug", log_format="console")
    logger.debug("as_console_debug")

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["event"] == "as_json"
    assert "as_console_debug" in lines[1] and not lines[1].startswith("{")


def _open_fds_on(path) -> int:
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if _readlink(f"/proc/self/fd/{fd}") == str(path))


def _readlink(link: str) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return ""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files")
def test_json_to_file_then_reconfigure_closes_the_old_file(tmp_path):
    path = tmp_path / "a.log"
    configure_logging(log_format="json", log_file=path)
    assert _open_fds_on(path) == 1
    configure_logging(log_format="json", stream=io.StringIO())
    assert _open_fds_on(path) == 0


def test_level_filters_lines_below_it(out):
    logger = get_logger("lvl")
    logger.debug("no")
    logger.info("yes")
    logging.getLogger("lib").debug("no either")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["yes"]


@pytest.mark.parametrize("level", ["verbose", "", 15, None, True])
def test_bad_level_is_a_value_error_naming_value_and_choices(level):
    with pytest.raises(ValueError) as info:
        configure_logging(log_level=level)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(level) in message and "DEBUG, INFO, WARNING, ERROR, CRITICAL" in message
    assert not is_logging_configured()


@pytest.mark.parametrize("fmt", ["xml", "", None])
def test_bad_format_is_a_value_error_naming_value_and_choices(fmt):
    with pytest.raises(ValueError) as info:
        configure_logging(log_format=fmt)  # type: ignore[arg-type]
    assert repr(fmt) in str(info.value) and "console, json" in str(info.value)
    assert not is_logging_configured()


def test_unwritable_log_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    bad = blocker / "app.log"
    with pytest.raises(OSError, match=r"cannot open log_file .*app\.log.* for writing"):
        configure_logging(log_format="json", log_file=bad)
    assert not is_logging_configured()


def test_directory_as_log_file_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        configure_logging(log_file=tmp_path)


def test_levels_are_case_insensitive_and_accept_ints(out):
    configure_logging(log_level="warning", log_format="json", stream=out)
    assert get_logging_info()["level"] == "WARNING"
    configure_logging(log_level=logging.DEBUG, log_format="JSON", stream=out)
    assert get_logging_info()["level"] == "DEBUG" and get_logging_info()["format"] == "json"


def test_default_output_is_stdout_at_the_time_of_logging(capsys):
    configure_logging(log_format="json")
    get_logger("std").info("to_stdout")
    (line,) = json_lines(capsys.readouterr().out)
    assert line["event"] == "to_stdout"


def test_get_logger_without_a_name_uses_the_calling_module(out):
    get_logger().info("x")
    (line,) = json_lines(out.getvalue())
    assert line["logger"] == __name__


def test_reset_logging_removes_the_handler_and_restores_the_root_level():
    root = logging.getLogger()
    root.setLevel(logging.ERROR)
    try:
        configure_logging(log_level="DEBUG", log_format="json", stream=io.StringIO())
        assert is_logging_configured() and len(kit_handlers()) == 1
        assert root.level == logging.DEBUG
        reset_logging()
        assert not is_logging_configured()
        assert kit_handlers() == []
        assert root.level == logging.ERROR
        assert get_logging_info()["configured"] is False
    finally:
        root.setLevel(logging.WARNING)


def test_logging_info_describes_the_configuration(tmp_path):
    path = tmp_path / "x.log"
    configure_logging(log_level="INFO", log_format="json", log_file=path)
    configure_log_sampling(sample_rate=0.25)
    info = get_logging_info()
    assert info["configured"] is True
    assert (info["format"], info["level"], info["file"]) == ("json", "INFO", str(path))
    assert {
        "add_trace_context",
        "redact_event",
        "sample_event",
        "merge_contextvars",
        "JSONRenderer",
    } <= set(info["processors"])
    assert info["sampling"] == {
        "sample_rate": 0.25,
        "max_per_second": None,
        "hash_based": False,
        "seen": 0,
        "kept": 0,
        "dropped": 0,
    }


def test_a_failing_user_processor_is_reported_and_the_line_still_goes_out():
    buf = io.StringIO()

    def broken(logger, method_name, event_dict):
        raise RuntimeError("processor bug")

    def tagging(logger, method_name, event_dict):
        event_dict["tagged"] = "password=pw42"  # added before redaction, so redacted
        return event_dict

    configure_logging(log_format="json", stream=buf, processors=[broken, tagging])
    assert {"broken", "tagging"} <= set(get_logging_info()["processors"])
    get_logger("p").info("still_here")
    get_logger("p").info("again")
    logging.getLogger("lib").info("foreign")

    lines = json_lines(buf.getvalue())
    events = [line["event"] for line in lines]
    assert [e for e in events if e in ("still_here", "again", "foreign")] == [
        "still_here",
        "again",
        "foreign",
    ]
    reports = [line for line in lines if line["logger"] == "tinyllm_instrument"]
    assert len(reports) == 1, "reported once per stage and error type"
    assert "log_processor" in reports[0]["event"] and "RuntimeError" in reports[0]["event"]
    assert all(
        line["tagged"] == "password=[REDACTED]"
        for line in lines
        if line["event"] != reports[0]["event"]
    )


def test_a_processor_returning_garbage_is_reported_and_ignored():
    buf = io.StringIO()
    configure_logging(log_format="json", stream=buf, processors=[lambda lg, m, ed: None])
    get_logger("p").info("fine")
    events = [line["event"] for line in json_lines(buf.getvalue())]
    assert "fine" in events
    assert any("log_processor" in e for e in events)


def test_a_user_processor_may_drop_lines_on_purpose():
    buf = io.StringIO()

    def drop_health(logger, method_name, event_dict):
        if event_dict.get("path") == "/health":
            raise structlog.DropEvent
        return event_dict

    configure_logging(log_format="json", stream=buf, processors=[drop_health])
    get_logger("p").info("req", path="/health")
    get_logger("p").info("req", path="/generate")
    assert [line["path"] for line in json_lines(buf.getvalue())] == ["/generate"]


def test_a_broken_span_does_not_cost_the_line(out, monkeypatch):
    def explode():
        raise RuntimeError("otel broken")

    monkeypatch.setattr(otel_trace, "get_current_span", explode)
    get_logger("t").info("survives")
    events = [line["event"] for line in json_lines(out.getvalue())]
    assert "survives" in events


def test_unrepresentable_values_do_not_break_the_line(out):
    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        __str__ = __repr__

    get_logger("t").info("odd", value=Bad())
    (line,) = json_lines(out.getvalue())
    assert line["value"] == "<unprintable Bad>"


def test_importing_configures_nothing():
    code = (
        "import logging, structlog, tinyllm_instrument.logging as t;"
        "assert logging.getLogger().handlers == [];"
        "assert not t.is_logging_configured();"
        "assert not structlog.is_configured()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("configured", [False, True])
def test_enrichment_processors_make_captured_logs_look_like_rendered_lines(configured, tracer):
    if configured:
        configure_logging(log_format="json", stream=io.StringIO(), app="svc", version="2.0")
    logger = get_logger("cap", component="executor")
    with structlog.testing.capture_logs(processors=enrichment_processors()) as logs:
        with bound_context(request_id="req-1"), tracer.start_as_current_span("op") as span:
            logger.info("called %s", "x", api_key="sk-abcdefghijkl", max_tokens=5)

    (entry,) = logs
    assert entry["event"] == "called x"
    assert (entry["api_key"], entry["max_tokens"]) == (REDACTED, 5)
    assert (entry["component"], entry["request_id"]) == ("executor", "req-1")
    assert entry["span_id"] == format(span.get_span_context().span_id, "016x")
    assert (entry["app"], entry.get("version")) == (
        ("svc", "2.0") if configured else (default_app_name(), None)
    )
    assert entry["level"] == "info" and "timestamp" in entry
    if configured:
        assert entry["logger"] == "cap"


# ----------------------------------------------------------------------------------------------
# One call, one line: control characters from any text are escaped (issue 14, item 11)
# ----------------------------------------------------------------------------------------------

FORGED = "done\n2026-01-01T00:00:00Z [info     ] admin_login user=root\x1b[2J\x1b]0;pwned\x07"


def test_console_lines_escape_control_characters_so_one_call_is_one_line():
    buf = io.StringIO()
    configure_logging(log_format="console", stream=buf)
    log = get_logger("app\x1b[31m")
    log.info(FORGED, note="a\nb", **{"k\rey": "v\u2028w\x85x"})
    logging.getLogger("lib").warning("stdlib %s", "x\ny\x1b[2J")
    log.info("plain", items=["a\nb", "\x1b"])

    text = buf.getvalue()
    lines = text.splitlines()
    assert len(lines) == 3, lines
    for forbidden in ("\x1b", "\x07", "\r", "\u2028", "\x85"):
        assert forbidden not in text
    assert "done\\n2026-01-01T00:00:00Z [info     ] admin_login" in lines[0]
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in lines[0]
    assert "stdlib x\\ny\\x1b[2J" in lines[1]


def test_a_console_traceback_keeps_its_lines_but_none_can_pass_for_a_log_line():
    buf = io.StringIO()
    configure_logging(log_format="console", stream=buf)
    try:
        raise ValueError("bad\n2026-01-01T00:00:00Z [info     ] forged\x1b[2J")
    except ValueError:
        get_logger("app").exception("failed")
        logging.getLogger("lib").exception("stdlib failed")

    lines = buf.getvalue().splitlines()
    heads = [line for line in lines if not line.startswith("  ")]
    assert len(heads) == 2 and "failed" in heads[0] and "stdlib failed" in heads[1]
    assert any(line.startswith("  Traceback (most recent call last):") for line in lines)
    assert "\x1b" not in buf.getvalue()


def test_json_lines_stay_one_line_whatever_the_text(out):
    log = get_logger("app\n")
    log.info(FORGED, note="v\u2028w\u2029x\x85y\x9b2J")
    logging.getLogger("lib").warning("stdlib\n%s", "x\u2028y")
    try:
        raise ValueError("multi\nline\x1b")
    except ValueError:
        log.exception("boom")

    text = out.getvalue()
    lines = text.split("\n")[:-1]
    assert len(lines) == 3 and len(text.splitlines()) == 3  # splitlines also splits on U+2028
    first, second, third = (json.loads(line) for line in lines)
    assert first["event"] == FORGED and first["note"] == "v\u2028w\u2029x\x85y\x9b2J"
    assert second["event"] == "stdlib\nx\u2028y"
    assert "ValueError: multi\nline\x1b" in third["exception"]


# ----------------------------------------------------------------------------------------------
# Records that do not render, values JSON refuses (issue 14, items 8 and 9)
# ----------------------------------------------------------------------------------------------


def test_a_stdlib_record_whose_arguments_do_not_fit_is_written_with_a_note(out, capfd, monkeypatch):
    # pytest's own capture handler on the root logger would raise on such a record: only ours.
    monkeypatch.setattr(logging.getLogger(), "handlers", kit_handlers())
    logging.getLogger("lib").warning("key %s and %s", "sk-live-abcdefghijklmnop")
    logging.getLogger("lib").info("%d items", "many")
    logging.getLogger("lib").info("%(user)s did %(what)s", {"user": "ada"})

    err = capfd.readouterr().err
    assert err == "", "no '--- Logging error ---' dump of the raw arguments on stderr"
    first, second, third = json_lines(out.getvalue())
    assert first["event"].startswith("key %s and %s [log arguments did not fit: TypeError")
    assert "sk-live" not in out.getvalue()
    assert "[REDACTED]" in first["event"]
    assert second["event"].startswith("%d items [log arguments did not fit")
    assert third["event"].startswith("%(user)s did %(what)s [log arguments did not fit: KeyError")


def test_kit_logger_arguments_that_do_not_fit_are_noted_too(out):
    get_logger("app").info("%s and %s", "one")
    (line,) = json_lines(out.getvalue())
    assert line["event"].startswith("%s and %s [log arguments did not fit: TypeError")


class _LeakyRepr:
    """str() is harmless; repr(), which the line shows, holds a secret."""

    def __str__(self) -> str:
        return "client"

    def __repr__(self) -> str:
        return "Client(api_key='sk-live-abcdefghijklmnop', token='tok-12345')"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_objects_are_shown_by_their_redacted_repr(fmt):
    buf = io.StringIO()
    configure_logging(log_format=fmt, stream=buf)
    get_logger("app").info("made", client=_LeakyRepr(), clients=[_LeakyRepr()])
    text = buf.getvalue()
    assert "sk-live" not in text and "tok-12345" not in text
    assert "Client(api_key='[REDACTED]', token='[REDACTED]')" in text


# ----------------------------------------------------------------------------------------------
# Identity: app and version (issue 17, item 11)
# ----------------------------------------------------------------------------------------------


def test_app_defaults_to_the_service_name_run_sets_then_otel_then_the_program(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "otel-name")
    monkeypatch.setenv("TINYLLM_INSTRUMENT_SERVICE_NAME", "kit-name")
    assert default_app_name() == "kit-name"
    monkeypatch.delenv("TINYLLM_INSTRUMENT_SERVICE_NAME")
    assert default_app_name() == "otel-name"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__spec__", None, raising=False)
    monkeypatch.setattr(sys, "argv", ["/srv/bots/support_bot.py", "--x"])
    assert default_app_name() == "support_bot"
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert default_app_name() == "python"


def test_a_script_under_python_m_or_a_file_is_named_after_itself(tmp_path):
    (tmp_path / "support_bot.py").write_text(
        "import io, json\n"
        "from tinyllm_instrument.logging import configure_logging, get_logger\n"
        "out = io.StringIO()\n"
        "configure_logging(log_format='json', stream=out)\n"
        "get_logger('x').info('hi')\n"
        "print(json.loads(out.getvalue())['app'])\n"
    )
    env = {k: v for k, v in os.environ.items() if "SERVICE_NAME" not in k}
    as_file = subprocess.run(
        [sys.executable, "support_bot.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    as_module = subprocess.run(
        [sys.executable, "-m", "support_bot"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert as_file.stdout == as_module.stdout == "support_bot\n", (as_file, as_module)
    env["TINYLLM_INSTRUMENT_SERVICE_NAME"] = "Support Bot"
    named = subprocess.run(
        [sys.executable, "support_bot.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert named.stdout == "Support Bot\n"


def test_app_and_version_given_are_written_and_the_kit_version_is_not(out):
    configure_logging(log_format="json", stream=out, app="support-bot", version="2.3.1")
    get_logger("x").info("hi")
    logging.getLogger("lib").info("stdlib hi")
    for line in json_lines(out.getvalue()):
        assert (line["app"], line["version"]) == ("support-bot", "2.3.1")
        assert tinyllm_instrument.__version__ not in json.dumps(
            {k: v for k, v in line.items() if k != "version"}
        )
    info = get_logging_info()
    assert (info["app"], info["version"]) == ("support-bot", "2.3.1")


@pytest.mark.parametrize("kwargs", [{"app": ""}, {"app": 3}, {"version": " "}])
def test_an_empty_app_or_version_is_a_value_error(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        configure_logging(**kwargs)
    assert not is_logging_configured()


# ----------------------------------------------------------------------------------------------
# The native path keeps what the stdlib path gave
# ----------------------------------------------------------------------------------------------


def test_kit_loggers_honour_stdlib_levels_for_their_name_and_logging_disable(out):
    logging.getLogger("noisy").setLevel(logging.WARNING)
    try:
        get_logger("noisy").info("hidden")
        get_logger("noisy.child").info("hidden too")
        get_logger("noisy").warning("shown")
        logging.disable(logging.CRITICAL)
        get_logger("other").error("disabled")
    finally:
        logging.disable(logging.NOTSET)
        logging.getLogger("noisy").setLevel(logging.NOTSET)
    assert [line["event"] for line in json_lines(out.getvalue())] == ["shown"]


def test_plain_structlog_loggers_go_through_the_kit_chain(out, tracer):
    with tracer.start_as_current_span("op"):
        structlog.get_logger("plain").info("via structlog", password="x", n=1)
        structlog.get_logger().debug("below the level")
    (line,) = json_lines(out.getvalue())
    assert (line["logger"], line["password"], line["n"]) == ("plain", REDACTED, 1)
    assert "trace_id" in line and line["app"] == default_app_name()


def test_kit_logger_api_matches_structlogs_bound_loggers(out):
    base = get_logger("api", a=1)
    bound = base.bind(b=2)
    bound.msg("msg")
    bound.unbind("a").warn("warn")
    bound.try_unbind("nope", "b").log(logging.ERROR, "log %s", "error")
    bound.new(c=3).fatal("fatal")
    asyncio.run(bound.ainfo("async"))
    with pytest.raises(KeyError):
        bound.unbind("missing")
    assert base.is_enabled_for(logging.INFO) and not base.isEnabledFor(logging.DEBUG)

    lines = json_lines(out.getvalue())
    assert [(x["event"], x["level"]) for x in lines] == [
        ("msg", "info"),
        ("warn", "warning"),
        ("log error", "error"),
        ("fatal", "critical"),
        ("async", "info"),
    ]
    assert [sorted(set(x) & {"a", "b", "c"}) for x in lines] == [
        ["a", "b"],
        ["b"],
        ["a"],
        ["c"],
        ["a", "b"],
    ]


def test_a_field_named_like_the_kits_bookkeeping_does_not_cost_the_line(out):
    get_logger("app").info("hi", _record="mine", positional_args=("x",))
    (line,) = json_lines(out.getvalue())
    assert line["event"] == "hi" and line["level"] == "info"
