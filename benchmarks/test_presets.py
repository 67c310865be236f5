"""What enabling presets costs calls they do not wrap: nothing (pytest-benchmark).

    .venv/bin/python -m pytest -q benchmarks/test_presets.py --benchmark-only \\
        --benchmark-columns=median --bench-rounds=5

Each runner does ``LOOPS`` calls; divide the figure by ``extra_info["per_call"]``. Every case is
measured with ``@openai`` and ``@anthropic`` off and on, side by side in each round
(``*_presets_off`` is the reference of ``*_presets_on``):

- ``plain``: a plain Python function;
- ``observed``: an ``@observe``'d node (the kit's own per-call path);
- ``sdk_unwrapped``: a method of the openai client that the preset does not wrap
  (``client.with_options``: builds a client copy in Python, no I/O).

A preset patches a handful of SDK methods and nothing else, so each ``_on`` case should read
as its ``_off`` twin, within the noise of the run.
"""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from tinyllm_instrument import instrument, observe, uninstrument

LOOPS = 1000


def _plain(x: int) -> int:
    return x + 1


@observe(node="bench_node")
def _observed(x: int) -> int:
    return x + 1


def _cases() -> dict[str, Callable[[], None]]:
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-bench")

    def plain() -> None:
        for i in range(LOOPS):
            _plain(i)

    def observed() -> None:
        for i in range(LOOPS):
            _observed(i)

    def sdk_unwrapped() -> None:
        for _ in range(LOOPS // 10):
            client.with_options(timeout=5.0)

    return {"plain": plain, "observed": observed, "sdk_unwrapped": sdk_unwrapped}


@pytest.fixture(scope="module")
def cases() -> dict[str, Callable[[], None]]:
    return _cases()


PER_CALL = {"plain": LOOPS, "observed": LOOPS, "sdk_unwrapped": LOOPS // 10}


@pytest.mark.parametrize("presets", ["off", "on"])
@pytest.mark.parametrize("case", ["plain", "observed", "sdk_unwrapped"])
def test_presets(benchmark, cases, case: str, presets: str, bench_round: int) -> None:
    if presets == "on":
        instrument("@openai", "@anthropic")
        # the SDK's resources load lazily: make sure the patches are really in place
        from openai.resources.chat.completions.completions import Completions

        assert hasattr(vars(Completions)["create"], "__wrapped__")
    try:
        run = cases[case]
        run()
        benchmark.group = f"presets r{bench_round}"
        benchmark.extra_info.update(
            preset_case=f"{case}_presets_{presets}", round=bench_round, per_call=PER_CALL[case]
        )
        benchmark(run)
    finally:
        uninstrument()
