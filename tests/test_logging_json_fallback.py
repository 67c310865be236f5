"""JSON lines are the same with the standard library's json as with orjson (the optional extra)."""

from __future__ import annotations

import json

import orjson  # noqa: E402 - the test extra installs it
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm_instrument.logging import _render

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Top-level keys of a line; the pipeline's own bookkeeping keys (_render.META_KEYS) are never
# rendered, by design, so they are not among them.
_keys = st.text(min_size=1).filter(lambda key: key not in _render.META_KEYS)
_events = st.dictionaries(_keys, _values, min_size=1, max_size=8)


def _render_with(backend: object, event: dict) -> str:
    saved = _render._orjson
    _render._orjson = backend  # type: ignore[assignment]
    try:
        line = _render.JsonLines(as_bytes=False)(None, "info", dict(event))
    finally:
        _render._orjson = saved
    return line


@settings(max_examples=300, deadline=None)
@given(_events)
def test_json_and_orjson_write_the_same_object_on_one_line(event):
    with_orjson = _render_with(orjson, event)
    with_json = _render_with(None, event)
    for line in (with_orjson, with_json):
        assert line.endswith("\n") and "\n" not in line[:-1] and "\r" not in line
        assert "\u2028" not in line and "\u2029" not in line
    assert json.loads(with_orjson) == json.loads(with_json) == event


@pytest.mark.parametrize("backend", ["orjson", "json"])
def test_values_the_encoder_refuses_still_give_a_line(backend):
    event = {"event": "odd", "mapping": {("a", 1): "tuple key"}, "big": 10**5000}
    line = _render_with(orjson if backend == "orjson" else None, event)
    parsed = json.loads(line)
    assert parsed["event"] == "odd"
    assert "tuple key" in json.dumps(parsed["mapping"])
    assert str(parsed["big"]).startswith("1") or "0x" in str(parsed["big"])
