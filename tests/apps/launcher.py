"""Runs ``python ARGS...`` as a child, as a parent that talks to a tool does, and reports on it.

Prints one line, ``RESULT {json}``, with the child's exit code, stdout and stderr, and parses the
child's stdout as JSON when ``--parse`` comes first (a child's stdout that holds anything else
makes this parent crash, as a real one would).
"""

import json
import subprocess
import sys


def launch(args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def main():
    args = sys.argv[1:]
    parse = args[:1] == ["--parse"]
    if parse:
        args = args[1:]
    child = launch(args)
    report = {"rc": child.returncode, "stdout": child.stdout, "stderr": child.stderr}
    if parse:
        report["parsed"] = json.loads(child.stdout)
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main()
