"""The preset contract: a named set of wrappers for one library, installed and removed whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Preset", "Report"]

#: What ``install`` calls once per thing it wrapped, with a label such as
#: ``"openai.resources.chat.completions:Completions.create"``; ``--print-plan`` lists them.
Report = Callable[[str], None]


@dataclass(frozen=True)
class Preset:
    """One preset: ``@NAME`` in ``instrument()``, ``--instrument`` and the ``..._TARGETS`` variable.

    Each preset module defines one of these as ``PRESET``; the registry
    (:mod:`tinyllm_instrument.presets`) lists them, checks the library's version, installs a preset
    once and reports a failure of ``install`` (so ``install`` need not guard itself).

    Attributes:
        name: ``"openai"``, used as ``@openai``.
        distribution: the ``importlib.metadata`` distribution the preset wraps (``"openai"``).
        majors: the major versions of that distribution the preset is written for.
        covers: one line saying what it wraps (``--print-plan``, docs/run.md).
        install: installs the wrappers, now if the library is imported already, else when it is
            imported; calls ``report(label)`` once per thing wrapped. Called once per enabling.
        uninstall: restores exactly what ``install`` wrapped (a patch someone put on top later
            stays); idempotent.

    Example:
        >>> PRESET = Preset("openai", "openai", (3,), "chat, responses, completions, embeddings",
        ...                 install=_install, uninstall=_uninstall)
    """

    name: str
    distribution: str
    majors: tuple[int, ...]
    covers: str
    install: Callable[[Report], None]
    uninstall: Callable[[], None]
