"""Starts Python children inside a using_attributes scope: subprocess.run and multiprocessing spawn.

Run under ``tinyllm-instrument run``; every span, log line and event of the children must carry the
scope the parent entered.
"""

import multiprocessing
import os
import subprocess
import sys

from tinyllm_instrument import using_attributes

HERE = os.path.dirname(os.path.abspath(__file__))


def spawned_work(word):
    import session_child

    return session_child.work(word)


def launch_subprocess():
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "session_child.py"), "from-subprocess"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def launch_spawn():
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=spawned_work, args=("from-spawn",))
    proc.start()
    proc.join(60)
    return proc.exitcode


def main():
    with using_attributes(
        session_id="parent-session", user_id="parent-user", tags=["p"], metadata={"k": 1}
    ):
        print(f"subprocess said {launch_subprocess()}")
        print(f"spawn exit code {launch_spawn()}")


if __name__ == "__main__":
    main()
