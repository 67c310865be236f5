"""Observed methods cross process boundaries: pickling, and real multiprocessing pools."""

from __future__ import annotations

import multiprocessing
import pickle

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
