"""The import direction docs/ARCHITECTURE.md draws, checked against the source.

Every module-level import of a kit module must go to a lower layer (or stay inside the module's
own package). Imports made inside a function, to break a cycle at call time, are not checked:
docs/ARCHITECTURE.md names them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tinyllm_instrument"

# Higher imports lower. The order is docs/ARCHITECTURE.md's "Layers", top to bottom.
LAYERS: list[tuple[str, ...]] = [
    ("tinyllm_instrument",),  # the package's __init__: the public names
    ("cli",),
    ("_bootstrap", "_pytest_plugin"),
    ("_runner",),
    ("_exit_report",),
    ("_children",),
    ("_program",),
    ("_rewrite",),
    ("_instrumentors",),
    ("patching",),
    ("presets",),
    ("observe",),
    ("_observer",),
    ("_observe_genai",),
    ("_usage", "_observe_metrics"),
    ("_observe_settings",),
    ("testing", "cache", "queues"),
    ("events",),
    ("telemetry",),
    ("tree",),
    ("logging",),
    ("metrics",),
    ("genai",),
    ("_errors",),
    ("_calls",),
    ("_config", "_context", "redaction", "_atfork", "_threads", "_patterns"),
]
RANK = {name: len(LAYERS) - i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top(module: str) -> str:
    """The layer key of a dotted kit module: its first part below the package."""
    parts = module.split(".")
    return parts[0] if len(parts) == 1 else parts[1]


def _module_level_imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        body = [node]
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # annotations only
            body = node.body
        for stmt in body:
            if isinstance(stmt, ast.ImportFrom) and stmt.level:
                base = package[: len(package) - (stmt.level - 1)]
                if stmt.module:
                    found.add(".".join([*base, stmt.module]))
                else:
                    found.update(".".join([*base, alias.name]) for alias in stmt.names)
            elif isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith(PACKAGE.name):
                found.add(stmt.module or "")
            elif isinstance(stmt, ast.Import):
                found.update(a.name for a in stmt.names if a.name.startswith(PACKAGE.name + "."))
    found.discard(name)
    return found


def test_every_module_has_a_layer():
    missing = sorted(
        _module_name(p) for p in PACKAGE.rglob("*.py") if _top(_module_name(p)) not in RANK
    )
    assert missing == [], "add them to LAYERS here and to docs/ARCHITECTURE.md"


def test_imports_flow_downward_only():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        for imported in sorted(_module_level_imports(path)):
            if imported.endswith("__version__"):
                continue  # a string from the package root's own metadata
            if _top(imported) == _top(importer) or importer == PACKAGE.name:
                continue
            if RANK[_top(imported)] >= RANK[_top(importer)]:
                upward.append(f"{importer} -> {imported}")
    assert upward == []


def test_the_layers_are_the_ones_the_architecture_page_draws():
    page = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    drawn = page[page.index("## Layers") : page.index("## Process-wide state")]
    for names in LAYERS[1:]:
        for name in names:
            assert name in drawn, f"{name} is not in docs/ARCHITECTURE.md's layers"
