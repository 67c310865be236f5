"""Where log lines go and what happens when they cannot: files, pipes, rotation, floods, signals.

Every fault runs in a subprocess that logs a known number of lines and then writes, to a file of
its own, what ``tinyllm_log_lines_dropped_total`` counted; the test counts the lines that
arrived and the lines printed on stderr. The figures of the last run are printed (``-s``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tinyllm_instrument.logging import _sink as sink_module
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.metrics import get_metrics_collector

# The child's epilogue: the drop counts, written where the child's stdout and stderr are not.
_REPORT = """
import json as _json
from tinyllm_instrument.metrics import get_metrics_collector as _gmc
_reg = _gmc().registry
_counts = {
    reason: _reg.get_sample_value("tinyllm_log_lines_dropped_total", {"reason": reason}) or 0
    for reason in ("disk_full", "broken_pipe", "closed", "write_error", "render_error", "rotated")
}
with open(REPORT, "w") as _f:
    _json.dump(_counts, _f)
"""


def run_child(code: str, tmp_path, **kwargs) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "report.json"
    program = f"REPORT = {str(report)!r}\n" + textwrap.dedent(code) + _REPORT
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, **kwargs
    )
    counts = json.loads(report.read_text()) if report.exists() else {}
    return result, counts


def dropped(reason: str) -> float:
    value = get_metrics_collector().registry.get_sample_value(
        "tinyllm_log_lines_dropped_total", {"reason": reason}
    )
    return value or 0.0


@pytest.fixture(autouse=True)
def _fresh_reports():
    sink_module.reset_drop_reports()
    yield
    sink_module.reset_drop_reports()


# ----------------------------------------------------------------------------------------------
# Promptly, and nothing lost at exit
# ----------------------------------------------------------------------------------------------


def test_a_line_is_in_the_file_before_the_process_crashes(tmp_path):
    path = tmp_path / "app.log"
    code = f"""
        import logging, os
        from tinyllm_instrument.logging import configure_logging, get_logger
        configure_logging(log_format="json", log_file={str(path)!r})
        get_logger("app").info("last words")
        logging.getLogger("lib").warning("stdlib last words")
        os._exit(1)  # no atexit, no flush, no finalizer
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=60)
    assert result.returncode == 1
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert events == ["last words", "stdlib last words"]


def test_a_line_on_stdout_reaches_the_pipe_before_the_process_crashes():
    code = """
        import os
        from tinyllm_instrument.logging import configure_logging, get_logger
        configure_logging(log_format="json")
        print("before", flush=False)  # the program's own output keeps its place
        get_logger("app").info("last words")
        os._exit(1)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "before"
    assert json.loads(lines[1])["event"] == "last words"


def test_every_line_is_there_after_a_normal_exit_from_many_threads(tmp_path):
    path = tmp_path / "app.log"
    code = f"""
        import threading
        from tinyllm_instrument.logging import configure_logging, get_logger
        configure_logging(log_format="json", log_file={str(path)!r})
        log = get_logger("app")
        def work(n):
            for i in range(2000):
                log.info("tick", worker=n, i=i, text="x" * 300)
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
    """
    result, counts = run_child(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # none torn
    assert len(lines) == 8000
    assert not any(counts.values())


# ----------------------------------------------------------------------------------------------
# Lost lines are counted, and each kind of failure is said once
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_counts_every_lost_line_and_says_so_once(tmp_path):
    code = """
        import logging
        from tinyllm_instrument.logging import configure_logging, get_logger
        configure_logging(log_format="json", log_file="/dev/full")
        log = get_logger("app")
        for i in range(500):
            log.info("tick", i=i)
            logging.getLogger("lib").info("stdlib tick")
    """
    result, counts = run_child(code, tmp_path)
    assert result.returncode == 0
    stderr = result.stderr.splitlines()
    print(
        f"\n/dev/full: 0 lines written, {counts['disk_full']:.0f} counted, {len(stderr)} on stderr"
    )
    assert counts["disk_full"] == 1000
    assert len(stderr) == 1, result.stderr
    assert "disk_full" in stderr[0] and "No space left on device" in stderr[0]


def test_a_closed_stdout_pipe_counts_every_lost_line_and_says_so_once(tmp_path):
    # app | head -1: the reader takes one line and goes away.
    code = """
        import logging
        from tinyllm_instrument.logging import configure_logging, get_logger
        configure_logging(log_format="json")
        log = get_logger("app")
        for i in range(20000):
            log.info("tick", i=i)
            if i == 10000:
                logging.getLogger("lib").warning("stdlib tick")
    """
    report = tmp_path / "report.json"
    program = f"REPORT = {str(report)!r}\n" + textwrap.dedent(code) + _REPORT
    child = subprocess.Popen(
        [sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    first = child.stdout.readline()
    child.stdout.close()
    with child.stderr:
        stderr = child.stderr.read().splitlines()
    assert child.wait(timeout=120) == 0
    counts = json.loads(report.read_text())
    print(
        f"\nclosed stdout: 1 line read, {counts['broken_pipe']:.0f} counted, "
        f"{len(stderr)} on stderr"
    )
    assert json.loads(first)["event"] == "tick"
    assert counts["broken_pipe"] >= 1
    assert len(stderr) == 1, stderr
    assert "broken_pipe" in stderr[0]


def test_values_json_refuses_are_rendered_otherwise_and_the_line_is_written(tmp_path, capfd):
    path = tmp_path / "app.log"
    configure_logging(log_format="json", log_file=path)
    big = 7**6000  # past the 4,300 digits int() will print
    get_logger("app").info("odd", mapping={(1, 2): "a", ("db", "password"): "hunter2"}, big=big)
    logging.getLogger("lib").info("odd stdlib", extra={"mapping": {(3,): object()}})

    first, second = [json.loads(line) for line in path.read_text().splitlines()]
    assert first["event"] == "odd"
    assert first["mapping"] == {"(1, 2)": "a", "('db', 'password')": "[REDACTED]"}
    assert first["big"] == hex(big)
    assert second["event"] == "odd stdlib"
    assert list(second["mapping"]) == ["(3,)"]
    assert capfd.readouterr().err == ""
    assert dropped("render_error") == 0


def test_logrotate_rename_and_delete_is_followed_by_a_new_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sink_module, "REOPEN_CHECK_SECONDS", 0.0)  # check before every line
    path = tmp_path / "app.log"
    configure_logging(log_format="json", log_file=path)
    log = get_logger("app")
    log.info("before")
    os.rename(path, tmp_path / "app.log.1")  # logrotate's default "create" mode...
    os.remove(tmp_path / "app.log.1")  # ...and a rotation that keeps nothing
    log.info("after")
    logging.getLogger("lib").warning("stdlib after")

    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert events == ["after", "stdlib after"]
    assert dropped("rotated") == 1  # "before" went with the deleted file


def test_lines_written_to_a_rotated_file_that_is_then_deleted_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(sink_module, "REOPEN_CHECK_SECONDS", 3600.0)
    path = tmp_path / "app.log"
    configure_logging(log_format="json", log_file=path)
    log = get_logger("app")
    os.rename(path, tmp_path / "app.log.1")
    log.info("into the rotated file")
    log.info("into the rotated file")
    os.remove(tmp_path / "app.log.1")
    monkeypatch.setattr(sink_module, "REOPEN_CHECK_SECONDS", 0.0)  # the check is due now
    log.info("after")

    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["after"]
    assert dropped("rotated") == 2


def test_copytruncate_keeps_writing_at_the_start_of_the_file(tmp_path):
    path = tmp_path / "app.log"
    configure_logging(log_format="json", log_file=path)
    log = get_logger("app")
    log.info("one", pad="x" * 500)
    (tmp_path / "app.log.1").write_bytes(path.read_bytes())  # logrotate copytruncate
    with open(path, "r+b") as f:
        f.truncate(0)
    log.info("two")
    text = path.read_bytes()
    assert not text.startswith(b"\0"), "O_APPEND: no hole where the old lines were"
    assert [json.loads(line)["event"] for line in text.decode().splitlines()] == ["two"]


def test_a_closed_stream_counts_its_lines_and_says_so_once(capsys):
    stream = io.StringIO()
    configure_logging(log_format="json", stream=stream)
    stream.close()
    for _ in range(3):
        get_logger("app").info("lost")
    err = capsys.readouterr().err.splitlines()
    assert dropped("closed") == 3
    assert len(err) == 1 and "closed" in err[0]


# ----------------------------------------------------------------------------------------------
# Signal handlers that log, while the program logs and reconfigures
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)")
def test_logging_from_a_signal_handler_never_deadlocks(tmp_path):
    path = tmp_path / "app.log"
    code = f"""
        import io, logging, signal
        from tinyllm_instrument import observe
        from tinyllm_instrument.logging import (
            configure_log_sampling, configure_logging, get_logger,
        )
        from tinyllm_instrument.redaction import configure_redaction
        log = get_logger("app")
        fired = [0]

        @observe(node="on_alarm")
        def on_alarm():
            log.info("from the handler", n=fired[0])
            logging.getLogger("lib").info("stdlib from the handler")

        def handler(signum, frame):
            fired[0] += 1
            on_alarm()

        configure_logging(log_format="json", log_file={str(path)!r})
        on_alarm()  # the kit's lazily made singletons (event emitter, metrics) exist from here
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        for round in range(60):
            configure_log_sampling(sample_rate=0.9, max_per_second=1e9)
            configure_logging(log_format="json" if round % 2 else "console",
                              log_file={str(path)!r})
            configure_redaction(extra_keys=["ssn"])
            for i in range(300):
                log.info("main", i=i, note="password=x")
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        print(fired[0])
    """
    result, counts = run_child(code, tmp_path)  # before: a deadlock, or "Logging error" dumps
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    assert int(result.stdout) > 10, "the handler ran"
    assert "from the handler" in path.read_text()
    assert not any(counts.values()), counts


def test_a_stream_that_cannot_encode_a_character_gets_the_line_escaped(capsys):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    configure_logging(log_format="console", stream=stream)
    get_logger("app").info("caf\u00e9 \udcff")
    logging.getLogger("lib").warning("na\u00efve")
    stream.flush()
    lines = raw.getvalue().decode("ascii").splitlines()
    assert len(lines) == 2
    assert "caf\\xe9 \\udcff" in lines[0] and "na\\xefve" in lines[1]
    assert capsys.readouterr().err == ""
    assert dropped("write_error") == dropped("closed") == 0
    stream.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_write_whole_lines_while_a_thread_logs(tmp_path):
    path = tmp_path / "app.log"
    code = f"""
        import os, threading
        from tinyllm_instrument.logging import configure_logging, get_logger
        configure_logging(log_format="json", log_file={str(path)!r})
        log = get_logger("app")
        stop = threading.Event()
        def chatter():
            while not stop.is_set():
                log.info("parent thread", pad="p" * 200)
        thread = threading.Thread(target=chatter)
        thread.start()
        children = []
        for n in range(20):
            pid = os.fork()
            if pid == 0:  # the sink's lock may have been held by the thread at the fork
                log.info("child", n=n, pad="c" * 200)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        stop.set()
        thread.join()
    """
    result, counts = run_child(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # none torn
    assert sorted(line["n"] for line in lines if line["event"] == "child") == list(range(20))
    assert not any(counts.values())


def test_a_line_in_flight_during_a_reconfiguration_goes_to_the_new_file(tmp_path, capsys):
    from tinyllm_instrument.logging import _logger

    configure_logging(log_format="json", log_file=tmp_path / "a.log")
    old = _logger.current_pipeline()
    assert old is not None
    configure_logging(log_format="json", log_file=tmp_path / "b.log")  # closes a.log
    old.run(get_logger("app"), "info", {"event": "in flight"}, old.processors)

    assert (tmp_path / "a.log").read_text() == ""
    (line,) = (tmp_path / "b.log").read_text().splitlines()
    assert json.loads(line)["event"] == "in flight"
    assert dropped("closed") == 0 and capsys.readouterr().err == ""
