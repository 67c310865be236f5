"""Set the kit up in Python child processes of ``tinyllm-instrument run``, then chain.

``run`` puts this folder first on ``PYTHONPATH`` and sets ``TINYLLM_INSTRUMENT_BOOTSTRAP=1``. This
module shadows any other ``sitecustomize``, so it runs the next one on ``sys.path`` first (an
OpenTelemetry auto-instrumentation one, a distribution's), then configures the kit once per
process. It reads the marker straight from ``os.environ``: importing the kit (and its
environment helpers) costs time every Python process would pay otherwise.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None or spec.origin == __file__:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # as site.py does for a broken sitecustomize: report, go on
        print(f"Error in sitecustomize {spec.origin}: {type(exc).__name__}: {exc}", file=sys.stderr)


def _bootstrap() -> None:
    if os.environ.get("TINYLLM_INSTRUMENT_BOOTSTRAP") != "1":
        return
    try:
        from tinyllm_instrument._runner import bootstrap_child
    except Exception as exc:  # the kit is not importable from this interpreter
        print(f"tinyllm-instrument: child process not instrumented: {exc}", file=sys.stderr)
        return
    bootstrap_child()


_chain()
_bootstrap()
