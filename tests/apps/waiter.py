"""Works a little, then blocks until a line arrives on stdin (or a signal ends it)."""

import logging
import sys

log = logging.getLogger("waiter")


def work(n):
    return n * 2


def wait_for_line():
    log.warning("waiting for a line")
    print("ready", flush=True)
    return sys.stdin.readline()


def main():
    total = sum(work(i) for i in range(3))
    wait_for_line()
    print(f"done {total}", flush=True)


if __name__ == "__main__":
    main()
