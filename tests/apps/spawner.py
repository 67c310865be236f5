"""Starts Python children: one with subprocess, one with multiprocessing (spawn).

Each child calls helpers.shout, which the parent's patterns select; its span must join the trace
of the call that launched the child.
"""

import multiprocessing
import os
import subprocess
import sys

import helpers

HERE = os.path.dirname(os.path.abspath(__file__))


def spawned_work(word):
    return helpers.shout(word)


def launch_subprocess():
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "child_worker.py"), "from-subprocess"],
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
    print(f"subprocess said {launch_subprocess()}")
    print(f"spawn exit code {launch_spawn()}")


if __name__ == "__main__":
    main()
