"""Logs a line through the standard library, then starts a Python child that logs one too."""

import logging
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
log = logging.getLogger("parent")


def main():
    log.warning("a line from the parent")
    subprocess.run([sys.executable, os.path.join(HERE, "json_child.py")], check=True)


if __name__ == "__main__":
    main()
