"""Run one docs block (and its setup / continued blocks) in this fresh interpreter.

Usage: python driver.py SPEC.json. SPEC holds ``pieces``: each a ``path`` and a ``source``
(None: read the file at ``path``, a setup or a check). All pieces run in one namespace, as one
``__main__`` script. A setup may set ``DOC_PORTS = {9464: 43121}``: later doc pieces then get
``:9464`` replaced.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys


class _Tee(io.TextIOBase):
    """Writes through to the real stdout and keeps a copy, for ``check:`` pieces (DOC_OUTPUT)."""

    def __init__(self, real) -> None:
        self.real, self.copy = real, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    sys.argv = [spec.get("argv0") or "block.py"]
    # Blocks import the page's ``file:`` blocks from the cwd, as ``python app.py`` would.
    sys.path[0] = os.getcwd()
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    namespace["DOC_OUTPUT"] = tee.copy.getvalue
    for piece in spec["pieces"]:
        source = piece["source"]
        if source is None:
            with open(piece["path"], encoding="utf-8") as f:
                source = f.read()
            namespace["__file__"] = piece["path"]
        elif piece["ports"]:
            for old, new in namespace.get("DOC_PORTS", {}).items():
                source = re.sub(rf"(?<=:){old}\b", str(new), source)
        exec(compile(source, piece["path"], "exec"), namespace)


if __name__ == "__main__":
    main()
