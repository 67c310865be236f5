"""Starts a Python child that reports what its site setup did."""

import subprocess
import sys

PROBE = (
    "import importlib, os, sys, sitecustomize; importlib.reload(sitecustomize); "
    "import tinyllm_instrument._runner as r; "
    "runs = os.environ['OTHER_SITECUSTOMIZE_PIDS'].split(',').count(str(os.getpid())); "
    "print(runs, r._BOOTSTRAPPED)"
)

print(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True).stdout.strip())
