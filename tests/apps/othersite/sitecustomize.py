"""A sitecustomize that was on PYTHONPATH before the run: the kit's must chain to it."""

import os

# one entry per run of this module, per process
os.environ["OTHER_SITECUSTOMIZE_PIDS"] = os.environ.get("OTHER_SITECUSTOMIZE_PIDS", "") + (
    f"{os.getpid()},"
)
