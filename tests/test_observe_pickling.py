"""Observed methods cross process boundaries: pickling, and real multiprocessing pools."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import observed_methods
import pytest
from observed_methods import Plain, Scaler

from tinyllm_instrument import instrument, uninstrument
from tinyllm_instrument.observe import is_observed

METHODS = {
    "bound method": lambda: Scaler(5).scale,
    "classmethod above": lambda: Scaler.doubled,
    "classmethod below": lambda: Scaler.tripled,
    "classmethod through an instance": lambda: Scaler(1).doubled,
    "staticmethod": lambda: Scaler.negated,
}
EXPECTED = {
    "bound method": [0, 5, 10, 15],
    "classmethod above": [0, 2, 4, 6],
    "classmethod below": [0, 3, 6, 9],
    "classmethod through an instance": [0, 2, 4, 6],
    "staticmethod": [0, -1, -2, -3],
}


@pytest.mark.parametrize("name", list(METHODS))
def test_observed_methods_pickle_and_still_observe(tinyllm_capture, name):
    method = METHODS[name]()
    copy = pickle.loads(pickle.dumps(method))
    assert [copy(x) for x in range(4)] == EXPECTED[name]
    assert tinyllm_capture.spans  # the copy is the observed method, not the plain one


def test_an_observed_generator_method_pickles(tinyllm_capture):
    copy = pickle.loads(pickle.dumps(Scaler(1).up_to))
    assert list(copy(3)) == [0, 1, 2]
    assert tinyllm_capture.span("Scaler.up_to").attributes["tinyllm.generator.items"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_pool_maps_observed_methods_and_classmethods(start_method):
    context = multiprocessing.get_context(start_method)
    with context.Pool(2) as pool:
        for name, make in METHODS.items():
            assert pool.map(make(), range(4)) == EXPECTED[name], name
        assert pool.map(observed_methods.count, [range(3)]) == [3]


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_pool_maps_methods_instrumented_by_pattern(start_method):
    instrument("observed_methods:Plain.*")
    try:
        assert is_observed(vars(Plain)["shift"]) and is_observed(vars(Plain)["square"])
        context = multiprocessing.get_context(start_method)
        with context.Pool(2) as pool:
            assert pool.map(Plain(10).shift, range(3)) == [10, 11, 12]
            assert pool.map(Plain.square, range(3)) == [0, 1, 4]
    finally:
        uninstrument()


POOL_SCRIPT = """\
import multiprocessing
import sys


class Worker:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, x):
        return x * self.factor

    @classmethod
    def square(cls, x):
        return x * x


def main():
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        print(pool.map(Worker(3).scale, range(4)), pool.map(Worker.square, range(4)))


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_an_app_mapping_its_methods_over_a_pool_works_under_run_as_it_does_plain(
    tmp_path, start_method
):
    script = tmp_path / "pool_app.py"
    script.write_text(POOL_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYLLM_INSTRUMENT_")}
    plain = subprocess.run(
        [sys.executable, str(script), start_method],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == "[0, 3, 6, 9] [0, 1, 4, 9]\n"
    cli = str(Path(sys.executable).parent / "tinyllm-instrument")
    run = subprocess.run(
        [cli, "run", "--instrument", "pool_app:*", str(script), start_method],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == plain.stdout
