"""Re-initialise an object in forked children, for as long as the object lives."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def call_in_forked_children(method: Callable[[], object]) -> None:
    """Call the bound ``method`` in every child forked after now, while its object is alive.

    ``os.register_at_fork`` cannot unregister, so the hook holds the object weakly: a pipeline,
    tree exporter or id generator that was replaced is collected, and its hook does nothing. A
    no-op where the platform cannot fork (Windows has no ``register_at_fork``).

    Args:
        method: a bound method taking no arguments, e.g. ``self._after_fork``.

    Example:
        >>> class Pool:
        ...     def __init__(self) -> None:
        ...         call_in_forked_children(self._after_fork)
        ...     def _after_fork(self) -> None:
        ...         pass
        >>> _ = Pool()
    """
    if not hasattr(os, "register_at_fork"):
        return
    weak = weakref.WeakMethod(method)

    def after_in_child() -> None:
        bound = weak()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)
