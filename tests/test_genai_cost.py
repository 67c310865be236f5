"""Cost: prices from a mapping, a callable, or genai-prices; faults counted, never raised."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tinyllm_instrument.genai import (
    Cost,
    LLMResult,
    cost_attributes,
    genai_prices_pricer,
    make_pricer,
)
from tinyllm_instrument.metrics import get_metrics_collector

CALL = LLMResult(input_tokens=2_000, output_tokens=500, total_tokens=2_500)


def cost_errors() -> float:
    value = get_metrics_collector().registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": "cost"}
    )
    return value or 0.0


def test_prices_from_a_mapping():
    pricer = make_pricer({"gpt-4o": (2.5, 10.0)})
    cost = pricer.price("gpt-4o", "openai", CALL)
    assert cost == Cost(prompt=0.005, completion=0.005, total=0.01)
    assert cost_attributes(cost) == {
        "llm.cost.prompt": 0.005,
        "llm.cost.completion": 0.005,
        "llm.cost.total": 0.01,
        "gen_ai.usage.cost": 0.01,
    }


def test_a_dated_snapshot_is_priced_as_its_model_unless_named():
    pricer = make_pricer({"gpt-4o": (2.5, 10.0), "claude-3-5-sonnet-20241022": (3, 15)})
    assert pricer.price("gpt-4o-2024-08-06", None, CALL).total == pytest.approx(0.01)
    assert pricer.price("claude-3-5-sonnet-20241022", None, CALL).total == pytest.approx(0.0135)
    # a different model that merely starts with a priced name is not priced as it
    assert pricer.price("gpt-4o-mini", None, CALL) is None


def test_an_unknown_model_or_no_usage_has_no_cost_and_no_error():
    pricer = make_pricer({"gpt-4o": (2.5, 10.0)})
    before = cost_errors()
    assert pricer.price("mystery-model", None, CALL) is None
    assert pricer.price(None, None, CALL) is None
    assert pricer.price("gpt-4o", None, LLMResult(model="gpt-4o")) is None
    assert cost_errors() == before


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({"m": (1.0,)}, r"prices\['m'\]=\(1.0,\): give \(usd_per_million_input"),
        ({"m": (1.0, -2.0)}, "two non-negative numbers"),
        ({"m": (1.0, math.nan)}, "two non-negative numbers"),
        ({"m": ("1", "2")}, "two non-negative numbers"),
        ({"m": (True, 1)}, "two non-negative numbers"),
        ({"m": 3.0}, "give"),
        ({"": (1, 1)}, "model '' must be a non-empty string"),
        ({3: (1, 1)}, "model 3 must be a non-empty string"),
    ],
)
def test_a_bad_mapping_is_one_clear_error_at_configure_time(prices, message):
    with pytest.raises(ValueError, match=message):
        make_pricer(prices)


@pytest.mark.parametrize("prices", [3.5, "gpt-4o=2.5", ["gpt-4o", 2.5], None])
def test_neither_a_mapping_nor_a_callable_is_a_type_error(prices):
    with pytest.raises(TypeError, match="give a mapping"):
        make_pricer(prices)


def test_a_callable_of_the_wrong_shape_is_refused_at_configure_time():
    with pytest.raises(TypeError, match=r"cannot be called as prices\(model, provider"):
        make_pricer(lambda model, tokens: 1.0)


def test_prices_from_a_callable():
    seen = []

    def price(model, provider, input_tokens, output_tokens):
        seen.append((model, provider, input_tokens, output_tokens))
        return 0.25

    pricer = make_pricer(price)
    assert pricer.source == "callable"
    assert pricer.price("m", "anthropic", CALL) == Cost(None, None, 0.25)
    assert seen == [("m", "anthropic", 2_000, 500)]
    assert cost_attributes(Cost(None, None, 0.25)) == {
        "llm.cost.total": 0.25,
        "gen_ai.usage.cost": 0.25,
    }


def test_a_callable_may_split_prompt_and_completion_or_not_know():
    assert make_pricer(lambda m, p, i, o: (0.1, 0.2)).price("m", None, CALL) == Cost(
        0.1, 0.2, pytest.approx(0.3)
    )
    assert make_pricer(lambda m, p, i, o: None).price("m", None, CALL) is None


@pytest.mark.parametrize(
    "answer",
    [RuntimeError("price service down"), -1.0, math.nan, math.inf, "0.1", True, (0.1,)],
    ids=["raises", "negative", "nan", "inf", "str", "bool", "short-tuple"],
)
def test_a_failing_price_callable_is_a_kit_fault_counted_never_raised(answer):
    def price(model, provider, input_tokens, output_tokens):
        if isinstance(answer, Exception):
            raise answer
        return answer

    before = cost_errors()
    assert make_pricer(price).price("m", None, CALL) is None
    assert cost_errors() == before + 1


def test_prices_from_genai_prices():
    pricer = genai_prices_pricer()
    assert pricer is not None and pricer.source == "genai-prices"
    cost = pricer.price("gpt-4o", "openai", CALL)
    # genai-prices' own answer for the same call, not a number copied here
    import genai_prices

    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=2_000, output_tokens=500), "gpt-4o", provider_id="openai"
    )
    assert cost.total == pytest.approx(float(expected.total_price))
    assert cost.prompt == pytest.approx(float(expected.input_price))
    assert cost.total > 0


def test_genai_prices_takes_cache_tokens_into_account():
    pricer = genai_prices_pricer()
    plain = pricer.price(
        "claude-3-5-sonnet-latest", "anthropic", LLMResult(input_tokens=10_000, output_tokens=10)
    )
    cached = pricer.price(
        "claude-3-5-sonnet-latest",
        "anthropic",
        LLMResult(input_tokens=10_000, output_tokens=10, cache_read_tokens=9_000),
    )
    assert cached.total < plain.total


def test_genai_prices_knows_providers_by_their_conventions_name():
    pricer = genai_prices_pricer()
    assert pricer.price("gemini-2.0-flash", "gcp.gen_ai", CALL) is not None
    assert pricer.price("gpt-4o", None, CALL) is not None  # it guesses the provider


def test_genai_prices_unknown_model_or_provider_has_no_cost_and_no_error():
    pricer = genai_prices_pricer()
    before = cost_errors()
    assert pricer.price("no-such-model-xyz", "openai", CALL) is None
    assert pricer.price("gpt-4o", "my-private-gateway", CALL) is None
    assert cost_errors() == before


def test_without_genai_prices_there_is_no_default_pricer():
    code = (
        "import sys; sys.modules['genai_prices'] = None\n"
        "from tinyllm_instrument.genai import genai_prices_pricer\n"
        "print(genai_prices_pricer())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_importing_the_kit_does_not_import_genai_prices_or_any_sdk():
    code = (
        "import sys, tinyllm_instrument.genai\n"
        "print(sorted(m for m in ('genai_prices', 'openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_money_as_decimal_is_accepted():
    from decimal import Decimal

    pricer = make_pricer({"m": (Decimal("2.5"), Decimal("10"))})
    assert pricer.price("m", None, CALL).total == pytest.approx(0.01)
    assert make_pricer(lambda m, p, i, o: Decimal("0.25")).price("m", None, CALL).total == 0.25


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o", "openai"),  # one static table
        ("gpt-4o-2024-08-06", None),  # a dated snapshot, provider guessed
        ("claude-haiku-4-5", "anthropic"),  # cache read and write rates
        ("claude-sonnet-4-5", "anthropic"),  # tiered above 200k input tokens
        ("gemini-2.5-pro", "gcp.gen_ai"),  # tiered, provider spelt as the conventions do
        ("o3", "openai"),  # prices that depend on the date (conditional)
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        LLMResult(input_tokens=2_000, output_tokens=500),
        LLMResult(input_tokens=10_000, output_tokens=10, cache_read_tokens=9_000),
        LLMResult(input_tokens=12_000, output_tokens=7, cache_read_tokens=3_000,
                  cache_creation_tokens=4_000),
        LLMResult(input_tokens=200_000, output_tokens=1),
        LLMResult(input_tokens=200_001, output_tokens=1),  # over the first tier
        LLMResult(input_tokens=5, output_tokens=0, cache_read_tokens=9),  # malformed: more read
    ],
    ids=["plain", "cache-read", "cache-both", "at-tier", "over-tier", "malformed"],
)  # fmt: skip
def test_the_learnt_genai_prices_rates_give_genai_prices_own_answer(model, provider, call):
    # The pricer asks genai-prices once per model and then prices in about a microsecond;
    # whatever it learnt, each call must cost what genai-prices itself says, to the cent's
    # billionth, twice in a row (the second from what was learnt).
    import genai_prices

    from tinyllm_instrument.genai.providers import prices_provider_id

    pricer = genai_prices_pricer()
    usage = genai_prices.Usage(
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_creation_tokens,
    )
    try:
        expected = genai_prices.calc_price(usage, model, provider_id=prices_provider_id(provider))
    except ValueError:  # genai-prices refuses the malformed usage: a counted fault, no cost
        before = cost_errors()
        assert pricer.price(model, provider, call) is None
        assert cost_errors() == before + 1
        return
    for _ in range(2):
        cost = pricer.price(model, provider, call)
        assert cost.total == pytest.approx(float(expected.total_price), rel=1e-9, abs=1e-15)
        assert cost.prompt == pytest.approx(float(expected.input_price), rel=1e-9, abs=1e-15)
        assert cost.completion == pytest.approx(float(expected.output_price), rel=1e-9, abs=1e-15)
