"""Two non-daemon worker threads that never end, and a main thread that joins them.

Only a signal ends it: without the kit, one SIGTERM does at once. ``--atexit-sleep`` registers an
atexit handler that takes a minute (to prove that a second SIGTERM ends the process at once);
``--deaf`` makes the main thread swallow the SystemExit that unwinds it (the kit must still end
the process in bounded time). ``--return`` ends the main code at once: Python then waits for the
workers, and the signal finds it there; its atexit handler has not run yet, and must.
``--flood`` logs to stdout until the pipe is full, and blocks there, in the log handler.
"""

import atexit
import logging
import sys
import threading
import time

log = logging.getLogger("forever")


def tick(i):
    return i


def worker(n):
    i = 0
    while True:
        tick(i)
        i += 1
        time.sleep(0.01)


def slow_atexit():
    print("in atexit", flush=True)
    time.sleep(60)


def join_all(threads, first):
    if first:  # inside the call, so that a signal from now on interrupts it
        print("ready", flush=True)
    for thread in threads:
        thread.join()


def say_atexit():
    print("app atexit ran")


def main():
    if "--atexit-sleep" in sys.argv:
        atexit.register(slow_atexit)
    threads = [threading.Thread(target=worker, args=(n,), name=f"worker-{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # a few ticks on each worker
    if "--flood" in sys.argv:  # a parent that never reads: the main thread blocks in a write
        logging.basicConfig(stream=sys.stdout)
        print("ready", file=sys.stderr, flush=True)
        try:
            while True:
                log.warning("x" * 100)
        finally:  # blocks again, for good, in the log handler: the pipe is still full
            log.warning("y" * 100_000)
    if "--return" in sys.argv:
        atexit.register(say_atexit)
        print("ready", flush=True)
        return
    first = True
    while True:
        try:
            join_all(threads, first)
        except SystemExit:
            if "--deaf" not in sys.argv:
                raise
            print("swallowed SystemExit", flush=True)
            first = False
            continue
        finally:
            # Not flushed here, and stdout is a pipe: it must still reach the parent.
            print("main unwound")
            log.warning("main unwound")


if __name__ == "__main__":
    main()
