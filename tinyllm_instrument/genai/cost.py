"""What an LLM call cost in USD: from the user's prices, or from genai-prices when it is installed.

``prices`` is validated once, when configured: a mapping ``{model: (usd_per_million_input,
usd_per_million_output)}`` or a callable ``(model, provider, input_tokens, output_tokens) ->
float | None``. Without it, the optional extra ``tinyllm_instrument[prices]`` (the
``genai-prices`` package) prices by provider and model, cache tokens included. An unknown model
has no cost and no error; a price function that raises or returns nonsense is a kit fault,
counted, never the app's.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, NamedTuple

from .._errors import Stage, report_internal_error
from . import conventions as c
from .providers import prices_provider_id
from .results import LLMResult

__all__ = [
    "Cost",
    "Pricer",
    "cost_attributes",
    "genai_prices_pricer",
    "make_pricer",
]

PriceFunction = Callable[[str, "str | None", int, int], Any]
#: Where a failing price function is counted (``tinyllm_instrumentation_errors_total{stage}``).
COST_STAGE = Stage.COST
#: (model, provider) pairs whose genai-prices rates are kept; past this, priced the slow way.
_MAX_RATES = 1024
#: Token counts genai-prices is asked to price once per (model, provider), to learn its rates.
_PROBE = 1_000_000
_MAX_TOKENS = 2**53 - 1
#: Seconds the learnt rates of a model with time-dependent prices are used before asking again.
_CONDITIONAL_TTL = 60.0
_monotonic = time.monotonic
# A dated snapshot of a model ("gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022") is priced as
# the model when the mapping names only the model.
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


class Cost(NamedTuple):
    """The USD cost of one call. ``prompt`` / ``completion`` are None when only a total is known."""

    prompt: float | None
    completion: float | None
    total: float


class Pricer:
    """Prices LLM calls; made by `make_pricer` (validated) or `genai_prices_pricer`.

    Call `price` per LLM call with what was read from its result; it never raises.
    """

    __slots__ = ("_table", "_function", "_genai_prices", "_rates", "_snapshot", "source")

    def __init__(
        self,
        *,
        table: Mapping[str, tuple[float, float]] | None = None,
        function: PriceFunction | None = None,
        genai_prices: Any = None,
        source: str,
    ) -> None:
        self._table = table
        self._function = function
        self._genai_prices = genai_prices
        # (model, provider id) -> that model's per-token rates, None (genai-prices does not
        # know it) or _SLOW (tiered or time-dependent prices: genai-prices prices each call).
        self._rates: dict[tuple[str, str | None], _Rates | object | None] = {}
        self._snapshot: Any = None
        #: ``"mapping"``, ``"callable"`` or ``"genai-prices"``: where prices come from.
        self.source = source

    def price(self, model: str | None, provider: str | None, info: LLMResult) -> Cost | None:
        """The cost of one call, or None when it cannot be priced (no model, no tokens, unknown).

        Args:
            model: the model to price: the response's, else the decorator's ``model=``.
            provider: ``gen_ai.provider.name`` when known.
            info: what was read from the result (token counts).

        Example:
            >>> p = make_pricer({"m": (1.0, 2.0)})
            >>> p.price("m", None, LLMResult(input_tokens=1_000_000, output_tokens=500_000))
            Cost(prompt=1.0, completion=1.0, total=2.0)
        """
        if model is None or not info.has_usage:
            return None
        inp = info.input_tokens or 0
        out = info.output_tokens or 0
        try:
            if self._table is not None:
                return self._from_table(model, inp, out)
            if self._function is not None:
                return _checked(self._function(model, provider, inp, out))
            return self._from_genai_prices(model, provider, info)
        except Exception as exc:  # the price function's fault is the kit's to absorb
            report_internal_error(COST_STAGE, exc)
            return None

    def _from_table(self, model: str, inp: int, out: int) -> Cost | None:
        table = self._table
        assert table is not None
        prices = table.get(model)
        if prices is None:
            prices = table.get(_DATE_SUFFIX.sub("", model))
            if prices is None:
                return None
        prompt = inp * prices[0] / 1e6
        completion = out * prices[1] / 1e6
        return Cost(prompt, completion, prompt + completion)

    def _from_genai_prices(self, model: str, provider: str | None, info: LLMResult) -> Cost | None:
        # genai-prices takes ~70-100 us per call (its price decomposition); the rates of a model
        # with static, untiered prices are learnt once per (model, provider) and applied here in
        # about a microsecond. Tiered or time-dependent prices go to genai-prices each call.
        module = self._genai_prices
        snapshot = module.data_snapshot.get_snapshot()
        if snapshot is not self._snapshot:  # genai-prices updated its tables: learn again
            self._snapshot = snapshot
            self._rates = {}
        provider_id = prices_provider_id(provider)
        key = (model, provider_id)
        rates = self._rates.get(key, _UNKNOWN)
        if rates is _UNKNOWN or (
            isinstance(rates, _Rates) and rates.expires and _monotonic() > rates.expires
        ):
            rates = self._learn(model, provider_id)
            if len(self._rates) < _MAX_RATES or key in self._rates:
                self._rates[key] = rates
        if rates is None:
            return None
        inp = info.input_tokens or 0
        cache_read = info.cache_read_tokens or 0
        cache_write = info.cache_creation_tokens or 0
        if isinstance(rates, _Rates) and cache_read + cache_write <= inp <= rates.up_to:
            prompt = (
                (inp - cache_read - cache_write) * rates.input
                + cache_read * rates.cache_read
                + cache_write * rates.cache_write
            )
            completion = (info.output_tokens or 0) * rates.output
            return Cost(prompt, completion, prompt + completion)
        return self._calc(model, provider_id, info)

    def _calc(self, model: str, provider_id: str | None, info: LLMResult) -> Cost | None:
        """genai-prices' own calculation of one call (None: it does not know the model)."""
        module = self._genai_prices
        usage = module.Usage(
            input_tokens=info.input_tokens or 0,
            output_tokens=info.output_tokens or 0,
            cache_read_tokens=info.cache_read_tokens,
            cache_write_tokens=info.cache_creation_tokens,
        )
        try:
            calc = module.calc_price(usage, model, provider_id=provider_id)
        except LookupError:  # a model (or provider) genai-prices does not know: no cost
            return None
        return Cost(float(calc.input_price), float(calc.output_price), float(calc.total_price))

    def _learn(self, model: str, provider_id: str | None) -> _Rates | object | None:
        """The per-token rates of one model, asked of genai-prices once; None when unknown.

        Its price is linear in each token count (below its first tier, for tiered prices,
        which start by input tokens), which is checked on a mixed call before it is trusted.
        Prices that depend on the time (a list of conditional ones: off-peak hours, a new price
        from a date) are learnt as they stand now and learnt again after ``_CONDITIONAL_TTL``.
        """
        module = self._genai_prices
        try:
            _provider, found = module.data_snapshot.get_snapshot().find_provider_model(
                model, None, provider_id, None
            )
        except LookupError:
            return None
        prices = getattr(found, "prices", None)
        tiered = getattr(module.types, "TieredPrices", None)
        expires = 0.0
        if isinstance(prices, list):
            prices = found.get_prices(datetime.now(tz=timezone.utc))
            expires = _monotonic() + _CONDITIONAL_TTL
        if tiered is None or not isinstance(prices, module.types.ModelPrice):
            return _SLOW
        up_to = _MAX_TOKENS
        for value in vars(prices).values():
            if isinstance(value, tiered):
                starts = [tier.start for tier in value.tiers]
                if starts:
                    up_to = min(up_to, *starts)
        n = min(_PROBE, up_to // 8)
        if n < 1000:
            return _SLOW

        def price(inp: int, read: int, write: int, out: int) -> Cost:
            cost = self._calc(model, provider_id, LLMResult(
                input_tokens=inp, output_tokens=out, cache_read_tokens=read,
                cache_creation_tokens=write,
            ))  # fmt: skip
            if cost is None:
                raise LookupError(model)
            return cost

        rates = _Rates(
            input=(price(n, 0, 0, 0).prompt or 0.0) / n,
            cache_read=(price(n, n, 0, 0).prompt or 0.0) / n,
            cache_write=(price(n, 0, n, 0).prompt or 0.0) / n,
            output=(price(0, 0, 0, n).completion or 0.0) / n,
            up_to=up_to,
            expires=expires,
        )
        check = price(7 * n, 2 * n, n, 3 * n)
        expected = (4 * rates.input + 2 * rates.cache_read + rates.cache_write) * n
        if not (
            math.isclose(check.prompt or 0.0, expected, rel_tol=1e-9, abs_tol=1e-12)
            and math.isclose(check.completion or 0.0, 3 * n * rates.output, rel_tol=1e-9)
        ):
            return _SLOW
        return rates


class _Rates(NamedTuple):
    """USD per token of one model, as genai-prices counts: ``input`` for uncached input tokens."""

    input: float
    cache_read: float
    cache_write: float
    output: float
    up_to: int  # input tokens up to which the rates hold (the first tier's start)
    expires: float  # time.monotonic() after which they are learnt again; 0.0: never


#: A model whose every call genai-prices prices itself (its prices could not be learnt).
_SLOW = object()
_UNKNOWN = object()


def _checked(value: Any) -> Cost | None:
    """A price function's answer: None, a total, or a (prompt, completion) pair, all >= 0."""
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:
        prompt, completion = (_usd(v) for v in value)
        return Cost(prompt, completion, prompt + completion)
    return Cost(None, None, _usd(value))


def _usd(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"price function returned {type(value).__name__}, not a number of USD")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"price function returned {value!r}, not a non-negative number of USD")
    return value


def make_pricer(prices: Any) -> Pricer:
    """Validate ``configure_observe(prices=...)`` once and return its `Pricer`.

    Args:
        prices: a mapping ``{model: (usd_per_million_input, usd_per_million_output)}``, or a
            callable ``(model, provider, input_tokens, output_tokens)`` returning the call's
            USD cost (a float, a ``(prompt_usd, completion_usd)`` pair, or None: unknown).

    Returns:
        The pricer.

    Raises:
        TypeError: ``prices`` is neither a mapping nor a callable, or a callable that cannot
            take the four arguments.
        ValueError: a mapping entry that is not a model name with two non-negative prices.

    Example:
        >>> make_pricer({"gpt-4o": (2.5, 10.0)}).source
        'mapping'
    """
    if isinstance(prices, Mapping):
        table: dict[str, tuple[float, float]] = {}
        for model, pair in prices.items():
            if not isinstance(model, str) or not model:
                raise ValueError(f"prices: model {model!r} must be a non-empty string")
            if (
                not isinstance(pair, (tuple, list))
                or len(pair) != 2
                or not all(_is_price(p) for p in pair)
            ):
                raise ValueError(
                    f"prices[{model!r}]={pair!r}: give (usd_per_million_input, "
                    "usd_per_million_output), two non-negative numbers"
                )
            table[model] = (float(pair[0]), float(pair[1]))
        return Pricer(table=table, source="mapping")
    if callable(prices):
        try:
            inspect.signature(prices).bind("model", "provider", 0, 0)
        except TypeError:
            raise TypeError(
                f"prices={prices!r} cannot be called as prices(model, provider, input_tokens, "
                "output_tokens); give a function of those four arguments, or a mapping "
                "{model: (usd_per_million_input, usd_per_million_output)}"
            ) from None
        except ValueError:  # a builtin without a signature: trust it, failures are counted
            pass
        return Pricer(function=prices, source="callable")
    raise TypeError(
        f"prices={prices!r}: give a mapping {{model: (usd_per_million_input, "
        "usd_per_million_output)}} or a function (model, provider, input_tokens, output_tokens)"
    )


def _is_price(value: Any) -> bool:
    return (
        isinstance(value, (int, float, Decimal))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def genai_prices_pricer() -> Pricer | None:
    """A pricer backed by the ``genai-prices`` package, or None when it is not installed.

    Imported here, when asked (at configure time), never at the kit's import.

    Example:
        >>> genai_prices_pricer() is None or genai_prices_pricer().source == "genai-prices"
        True
    """
    try:
        import genai_prices
    except ImportError:
        return None
    return Pricer(genai_prices=genai_prices, source="genai-prices")


def cost_attributes(cost: Cost) -> dict[str, float]:
    """``llm.cost.prompt`` / ``.completion`` / ``.total`` and ``gen_ai.usage.cost``.

    Example:
        >>> cost_attributes(Cost(0.25, 0.5, 0.75))
        ... # doctest: +NORMALIZE_WHITESPACE
        {'llm.cost.total': 0.75, 'gen_ai.usage.cost': 0.75, 'llm.cost.prompt': 0.25,
         'llm.cost.completion': 0.5}
    """
    attrs = {c.LLM_COST_TOTAL: cost.total, c.GEN_AI_USAGE_COST: cost.total}
    if cost.prompt is not None:
        attrs[c.LLM_COST_PROMPT] = cost.prompt
    if cost.completion is not None:
        attrs[c.LLM_COST_COMPLETION] = cost.completion
    return attrs
