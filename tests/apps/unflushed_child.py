"""A child that ends without closing what it wrote: Python's own exit must flush and finalize.

Writes ``argv[1]`` through a file object it never closes, registers an atexit handler, keeps an
object with a finalizer, starts a non-daemon thread that outlives the main code, and exits 3.
"""

import atexit
import sys
import threading
import time


class Noisy:
    def __del__(self):
        sys.stderr.write("finalizer ran\n")


def write(path):
    out = open(path, "w")  # noqa: SIM115 - left open on purpose
    out.write("written by the child")
    return out


def late():
    time.sleep(0.2)
    sys.stderr.write("thread finished\n")


KEEP = None
NOISY = Noisy()

if __name__ == "__main__":
    KEEP = write(sys.argv[1])
    atexit.register(lambda: sys.stderr.write("atexit ran\n"))
    threading.Thread(target=late).start()
    sys.exit(3)
