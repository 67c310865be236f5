"""The cardinality guard: label values converted once, label combinations capped per metric."""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from typing import Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

from .._errors import Stage, report_internal_error

__all__ = [
    "MAX_LABEL_VALUE_LENGTH",
    "OTHER_LABEL_VALUE",
    "GuardedMetric",
    "MetricLabels",
    "label_name",
    "label_value",
]

#: The value that replaces label values refused by the cardinality guard.
OTHER_LABEL_VALUE = "other"
#: Label values longer than this are cut to this many characters: a label is a dimension to group
#: by, not a place for prompts or stack traces, and long values bloat every scrape.
MAX_LABEL_VALUE_LENGTH = 128
# Bound on the guard's memos of raw keys and folded combinations, so a flood of distinct label
# values cannot grow memory: the guard exists precisely to stop that. At least this many entries,
# or 4x max_cardinality when that is larger.
_MIN_MEMO_SIZE = 4096


class MetricLabels(str, enum.Enum):
    """The label names used by the kit's metrics.

    Members are str-Enums for use in code (``labels(**{MetricLabels.GRAPH: "g"})`` works); the
    exposition always shows the plain value (``graph``), never ``MetricLabels.GRAPH``.
    """

    MODEL = "model"
    GRAPH = "graph"
    REQUEST_TYPE = "request_type"
    ERROR_TYPE = "error_type"
    NODE = "node"
    CACHE_TYPE = "cache_type"
    PRIORITY = "priority"
    CATEGORY = "category"
    SEVERITY = "severity"
    STAGE = "stage"
    REASON = "reason"


def label_name(name: str | enum.Enum) -> str:
    """A label name as a plain str, whatever it is given as (a str, a str-Enum member)."""
    # Prometheus calls str() on label names, and str() of a str-Enum member is "Class.MEMBER"
    # (the original's defect). Always hand it a plain str.
    if isinstance(name, enum.Enum):
        name = name.value
    return str.__str__(name) if isinstance(name, str) else str(name)


def label_value(value: object) -> str:
    """Turn one label value into the string prometheus will show."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "none"
    if isinstance(value, str):
        text = str.__str__(value)  # a plain str, whatever __str__ a subclass defines
    else:
        try:
            text = str(value)
        except Exception:  # a user's __str__ must not break recording
            text = f"<unprintable {type(value).__name__}>"
    if len(text) > MAX_LABEL_VALUE_LENGTH:
        text = text[:MAX_LABEL_VALUE_LENGTH]
    return text


def _memoizable(values: tuple[object, ...]) -> bool:
    # The raw-key memo may hold only keys whose equality implies equal label strings. Numbers
    # break that: 1 == 1.0 == True, yet they render "1", "1.0" and "True". Plain str, None and
    # Enums with str values are safe; anything else is converted on every call.
    for v in values:
        if v is None or type(v) is str:
            continue
        if isinstance(v, enum.Enum) and not isinstance(v, (int, float, complex)):
            continue  # identity equality, or (str mixin) equal to the very string it renders
        return False
    return True


_M = TypeVar("_M", bound=MetricWrapperBase)


class GuardedMetric(Generic[_M]):
    """A labelled prometheus metric behind a cardinality guard.

    ``labels(...)`` returns the prometheus child for a label combination. A combination seen
    before costs one dict lookup on the raw argument tuple. The first time a combination is
    seen, it is normalised (str-Enum -> value, None -> "none", other objects -> ``str()``, values
    longer than :data:`MAX_LABEL_VALUE_LENGTH` cut) and admitted under a lock.

    Once ``max_cardinality`` combinations are admitted, a new combination has each value that no
    admitted combination uses in that position replaced by ``"other"``. If that folded combination
    is itself admitted, it is used; otherwise the all-``"other"`` combination is, so a metric holds
    at most ``max_cardinality + 1`` series. Every observation still lands in some series, so sums
    and counts are preserved. ``dropped`` counts refused combinations: each distinct one once, as
    long as the guard's bounded memo remembers it (under a flood of distinct values the memo is
    flushed and a combination may be counted again, so read it as pressure, not as a census).

    Children obtained before :meth:`MetricsCollector.reset_metrics` are detached from the
    registry by it; call ``labels`` again afterwards.

    Attributes:
        name: the family name as exposed, e.g. ``"tinyllm_requests_total"``.
        metric: the underlying prometheus metric.
        label_names: the label names, plain strings.
        max_cardinality: the cap on admitted combinations before folding starts.
    """

    __slots__ = (
        "name",
        "metric",
        "label_names",
        "max_cardinality",
        "_fast",
        "_children",
        "_folded",
        "_seen",
        "_dropped",
        "_lock",
        "_generation",
        "_memo_size",
        "_all_other",
        "_index",
    )

    def __init__(self, name: str, metric: _M, label_names: tuple[str, ...], max_cardinality: int):
        self.name = name
        self.metric: _M = metric
        self.label_names = label_names
        self.max_cardinality = max_cardinality
        # Re-entrant: a signal handler that records a metric runs in the thread it interrupted,
        # possibly inside this lock. Every section below stays consistent if that happens.
        self._lock = threading.RLock()
        self._memo_size = max(_MIN_MEMO_SIZE, 4 * max_cardinality)
        self._all_other = (OTHER_LABEL_VALUE,) * len(label_names)
        self._index = {n: i for i, n in enumerate(label_names)}
        self._generation = 0
        self._fast: dict[tuple[object, ...], _M] = {}
        self._children: dict[tuple[str, ...], _M] = {}
        self._folded: dict[tuple[str, ...], _M] = {}
        self._seen: tuple[set[str], ...] = tuple(set() for _ in label_names)
        self._dropped = 0

    def labels(self, *values: object, **kv: object) -> _M:
        """Return the prometheus child for these label values.

        Args:
            *values: one value per label, in ``label_names`` order.
            **kv: label values by name instead (plain or :class:`MetricLabels` names).

        Returns:
            The child (``.inc()``, ``.set()``, ``.observe()`` ...); possibly the series of a
            folded combination when the metric is at its cardinality cap.

        A value that cannot be hashed is converted all the same; one whose ``__hash__`` or
        ``__eq__`` raises something other than TypeError is also counted in
        ``tinyllm_instrumentation_errors_total{stage="metric_label"}`` and logged once.

        Raises:
            ValueError: the wrong number of values, or unknown / missing label names.

        Example:
            >>> c = MetricsCollector()
            >>> c.requests_total.labels("gpt-x", "qa", "generate").inc()
            >>> c.requests_total.labels(model="gpt-x", graph="qa", request_type="generate").inc()
        """
        if kv:
            values = self._positional(values, kv)
        try:
            return self._fast[values]
        except KeyError:
            return self._resolve(values, memoize=True)
        except Exception as exc:
            # TypeError: an unhashable value (a list, a dict), fine as a label once converted.
            # Anything else is a user object whose __hash__ or __eq__ is broken: not the app's
            # problem to be raised into, but worth a count.
            if not isinstance(exc, TypeError):
                report_internal_error(Stage.METRIC_LABEL, exc)
            return self._resolve(values, memoize=False)

    @property
    def cardinality(self) -> int:
        """How many label combinations currently have a series (at most max_cardinality + 1)."""
        return len(self._children)

    @property
    def dropped(self) -> int:
        """How many label combinations were refused and folded into ``"other"``."""
        return self._dropped

    def reset(self) -> None:
        """Remove every series and forget every admitted, folded and memoised combination."""
        with self._lock:
            # In this order so that a signal handler recording mid-reset (the lock is
            # re-entrant) leaves no child detached by clear() in the new bookkeeping: it writes
            # into the old dicts, which are then dropped, and the memo goes last.
            self.metric.clear()
            if not self.label_names:  # clear() leaves an unlabelled metric's value alone
                self.metric._metric_init()
            self._children = {}
            self._folded = {}
            self._seen = tuple(set() for _ in self.label_names)
            self._dropped = 0
            self._generation += 1
            self._fast = {}

    def __repr__(self) -> str:
        return (
            f"GuardedMetric({self.name!r}, labels={list(self.label_names)}, "
            f"cardinality={self.cardinality}, dropped={self._dropped})"
        )

    # -- slow path ---------------------------------------------------------------------------

    def _positional(
        self, values: tuple[object, ...], kv: Mapping[str, object]
    ) -> tuple[object, ...]:
        if values:
            raise ValueError(
                f"{self.name}: pass label values either positionally or by name, not both"
            )
        out: list[object] = [_MISSING] * len(self.label_names)
        for key, value in kv.items():
            i = self._index.get(label_name(key))
            if i is None:
                raise ValueError(
                    f"{self.name} has no label {key!r}; its labels are {list(self.label_names)}"
                )
            out[i] = value
        if any(v is _MISSING for v in out):
            missing = [n for n, v in zip(self.label_names, out, strict=True) if v is _MISSING]
            raise ValueError(f"{self.name}: missing label values for {missing}")
        return tuple(out)

    def _resolve(self, values: tuple[object, ...], memoize: bool) -> _M:
        if len(values) != len(self.label_names):
            raise ValueError(
                f"{self.name} takes {len(self.label_names)} label values "
                f"{list(self.label_names)}, got {len(values)}"
            )
        generation = self._generation
        norm = tuple(label_value(v) for v in values)
        # Lock-free reads first: dict reads are atomic, and the lock is only for writes.
        child = self._children.get(norm)
        if child is None:
            child = self._folded.get(norm)
        memoize = memoize and _memoizable(values)
        if child is None or memoize:
            with self._lock:
                if child is None:
                    child = self._children.get(norm)
                    if child is None:
                        child = self._folded.get(norm)
                    if child is None:
                        child = self._admit(norm)
                # A reset between our reads and here makes `child` stale: use it for this one
                # call (an observation racing a reset may be lost) but do not memoise it.
                if memoize and generation == self._generation:
                    if len(self._fast) >= self._memo_size:
                        self._fast.clear()
                    self._fast[values] = child
        return child

    def _admit(self, norm: tuple[str, ...]) -> _M:
        # Called with self._lock held, for a normalised combination with no series yet.
        if not norm:  # a family without labels: the metric itself is its one series
            child = self._children[norm] = self.metric
            return child
        if len(self._children) < self.max_cardinality:
            child = self._children[norm] = self.metric.labels(*norm)
            for seen, value in zip(self._seen, norm, strict=True):
                seen.add(value)
            return child
        if norm == self._all_other:  # the overflow series itself, asked for by name
            child = self._children[norm] = self.metric.labels(*norm)
            return child
        folded = tuple(
            value if value in seen else OTHER_LABEL_VALUE
            for value, seen in zip(norm, self._seen, strict=True)
        )
        target = self._children.get(folded)
        if target is None:
            target = self._children.get(self._all_other)
            if target is None:
                target = self._children[self._all_other] = self.metric.labels(*self._all_other)
        self._dropped += 1
        if len(self._folded) >= self._memo_size:
            self._folded.clear()
        self._folded[norm] = target
        return target


_MISSING = object()
