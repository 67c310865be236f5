"""instrument_cache: exact hit and miss counts for mappings, lru_cache functions and real Redis."""

from __future__ import annotations

import asyncio
import functools

import pytest
import redis
import redis.asyncio
from redis_server import RedisServer

import tinyllm_instrument
from tinyllm_instrument import cache as cache_module
from tinyllm_instrument.cache import instrument_cache
from tinyllm_instrument.events import BufferedEventHandler, get_event_emitter
from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector

HITS, MISSES = "tinyllm_cache_hits_total", "tinyllm_cache_misses_total"


@pytest.fixture
def collector(registry):
    collector = MetricsCollector(registry=registry)
    set_metrics_collector(collector)
    return collector


def counts(collector: MetricsCollector, cache_type: str) -> tuple[float | None, float | None]:
    labels = {"cache_type": cache_type}
    return (
        collector.registry.get_sample_value(HITS, labels),
        collector.registry.get_sample_value(MISSES, labels),
    )


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


# --------------------------------------------------------------------------- mappings


def test_mapping_get_counts_each_hit_and_miss(collector):
    cache = instrument_cache({})
    assert cache.get("q") is None
    assert cache.get("q", "fallback") == "fallback"
    cache["q"] = "answer"
    assert cache.get("q") == "answer"
    assert cache.get("q", "fallback") == "answer"
    assert counts(collector, "memory") == (2.0, 2.0)


def test_mapping_get_tells_a_stored_none_from_a_miss(collector):
    cache = instrument_cache({"k": None})
    assert cache.get("k", "default") is None
    assert counts(collector, "memory") == (1.0, None)


def test_mapping_getitem_counts_and_reraises_the_same_keyerror(collector):
    cache = instrument_cache({"a": 1}, cache_type="answers")
    assert cache["a"] == 1
    with pytest.raises(KeyError) as info:
        cache["b"]
    assert info.value.args == ("b",)
    assert counts(collector, "answers") == (1.0, 1.0)


def test_mapping_setdefault_counts_and_stores(collector):
    raw: dict[str, int] = {}
    cache = instrument_cache(raw)
    assert cache.setdefault("k", 1) == 1
    assert cache.setdefault("k", 2) == 1
    assert raw == {"k": 1}
    assert counts(collector, "memory") == (1.0, 1.0)


def test_membership_and_writes_are_not_lookups(collector):
    raw: dict[str, int] = {}
    cache = instrument_cache(raw)
    cache["a"] = 1
    assert "a" in cache and "b" not in cache
    assert len(cache) == 1 and list(cache) == ["a"]
    del cache["a"]
    assert raw == {}
    assert counts(collector, "memory") == (None, None)


def test_instrumented_mapping_still_is_the_mapping_type(collector):
    cache = instrument_cache({"a": 1})
    assert isinstance(cache, dict)
    assert cache == {"a": 1}


def test_counts_go_to_the_collector_current_at_each_lookup(collector, registry):
    cache = instrument_cache({"a": 1})
    cache.get("a")
    second = MetricsCollector()
    set_metrics_collector(second)
    cache.get("a")
    cache.get("b")
    assert counts(collector, "memory") == (1.0, None)
    assert counts(second, "memory") == (1.0, 1.0)


# --------------------------------------------------------------------------- lru_cache


def test_lru_cache_function_counts_as_cache_info_does(collector):
    calls = []

    @functools.lru_cache(maxsize=2)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    cached = instrument_cache(square, cache_type="squares")
    assert [cached(2), cached(2), cached(3), cached(2), cached(4), cached(3)] == [4, 4, 9, 4, 16, 9]
    info = cached.cache_info()
    assert (info.hits, info.misses) == (2, 4)
    assert counts(collector, "squares") == (2.0, 4.0)
    assert calls == [2, 3, 4, 3]


def test_lru_cache_clear_does_not_lose_or_double_counts(collector):
    cached = instrument_cache(functools.lru_cache(maxsize=None)(lambda x: x))
    cached(1)
    cached(1)
    cached.cache_clear()
    cached(1)
    cached(1)
    cached(1)
    assert counts(collector, "memory") == (3.0, 2.0)


def test_lru_cache_on_a_method_binds_and_counts(collector):
    class Model:
        def __init__(self) -> None:
            self.calls = 0

        @functools.partial(instrument_cache, cache_type="methods")
        @functools.lru_cache(maxsize=8)  # noqa: B019 - the instance lives as long as the test
        def embed(self, text: str) -> int:
            self.calls += 1
            return len(text)

    model = Model()
    assert [model.embed("ab"), model.embed("ab"), model.embed("abc")] == [2, 2, 3]
    assert model.calls == 2
    assert counts(collector, "methods") == (1.0, 2.0)


def test_lru_cache_counts_calls_that_raise(collector):
    @functools.lru_cache
    def boom(x: int) -> int:
        raise ValueError(x)

    cached = instrument_cache(boom)
    with pytest.raises(ValueError):
        cached(1)
    assert counts(collector, "memory") == (None, 1.0)


# --------------------------------------------------------------------------- events, switch, errors


def test_debug_cache_events_only_when_a_handler_wants_them(collector, monkeypatch):
    built = []
    real_emit = cache_module.emit_event

    def spy(*args, **kwargs):
        built.append(args[0])
        return real_emit(*args, **kwargs)

    monkeypatch.setattr(cache_module, "emit_event", spy)
    cache = instrument_cache({"a": 1}, cache_type="answers")
    cache.get("a")
    assert built == []  # the default handlers take INFO and up: no event is built
    buffer = get_event_emitter().add_handler(BufferedEventHandler(min_severity="debug"))
    cache.get("a")
    cache.get("missing")
    events = buffer.get_events()
    assert [(e.event_type, e.category.value, e.severity.value) for e in events] == [
        ("cache.hit", "cache", "debug"),
        ("cache.miss", "cache", "debug"),
    ]
    assert [e.data for e in events] == [
        {"cache_type": "answers", "key": "a"},
        {"cache_type": "answers", "key": "missing"},
    ]


def test_lru_cache_events_name_the_function(collector):
    buffer = get_event_emitter().add_handler(BufferedEventHandler(min_severity="debug"))

    @functools.lru_cache
    def lookup(x: int) -> int:
        return x

    cached = instrument_cache(lookup, cache_type="lookups")
    cached(1)
    cached(1)
    assert [(e.event_type, e.data) for e in buffer.get_events()] == [
        ("cache.miss", {"cache_type": "lookups", "function": lookup.__qualname__}),
        ("cache.hit", {"cache_type": "lookups", "function": lookup.__qualname__}),
    ]


def test_nothing_is_counted_while_the_kit_is_off(collector):
    cache = instrument_cache({"a": 1})
    tinyllm_instrument.configure(enabled=False)
    assert cache.get("a") == 1
    assert cache.get("b") is None
    assert counts(collector, "memory") == (None, None)


def test_a_failure_while_counting_never_reaches_the_caller(collector, monkeypatch):
    def broken():
        raise RuntimeError("collector unavailable")

    monkeypatch.setattr(cache_module, "get_metrics_collector", broken)
    cache = instrument_cache({"a": 1})
    assert cache.get("a") == 1
    assert cache["a"] == 1
    errors = collector.registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": "cache_metrics"}
    )
    assert errors == 2.0


@pytest.mark.parametrize("obj", [42, "text", object(), [1, 2]])
def test_an_unsupported_object_is_a_clear_type_error(obj):
    with pytest.raises(TypeError, match="mapping-like cache.*lru_cache function.*redis-py client"):
        instrument_cache(obj)


@pytest.mark.parametrize("cache_type", ["", "  ", 3])
def test_cache_type_must_be_a_non_empty_string(cache_type):
    with pytest.raises(TypeError, match="cache_type must be a non-empty string"):
        instrument_cache({}, cache_type=cache_type)


# --------------------------------------------------------------------------- real Redis


def test_redis_client_lookups_count_hits_and_misses_per_key(collector, redis_server):
    raw = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        client = instrument_cache(raw)
        client.set("a", "1")
        client.hset("h", "f", "v")
        assert client.get("a") == b"1"
        assert client.get("nope") is None
        assert client.mget(["a", "nope", "a"]) == [b"1", None, b"1"]
        assert client.hget("h", "f") == b"v"
        assert client.hmget("h", ["f", "g"]) == [b"v", None]
        assert counts(collector, "redis") == (5.0, 3.0)
        # The server counts keys, not hash fields: HMGET of an existing hash is one hit for it.
        stats = raw.info("stats")
        assert (stats["keyspace_hits"], stats["keyspace_misses"]) == (5, 2)
    finally:
        raw.close()


def test_redis_client_passes_everything_else_through(collector, redis_server):
    raw = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        client = instrument_cache(raw, cache_type="sessions")
        assert isinstance(client, redis.Redis)
        assert client.ping() is True
        client.set("k", "v")
        with client.pipeline() as pipe:  # pipelines are not counted
            pipe.get("k")
            assert pipe.execute() == [b"v"]
        assert counts(collector, "sessions") == (None, None)
    finally:
        raw.close()


def test_asyncio_redis_client_counts_after_the_await(collector, redis_server):
    async def scenario() -> list[object]:
        raw = redis.asyncio.Redis(host=redis_server.host, port=redis_server.port)
        try:
            client = instrument_cache(raw)
            await client.set("a", "1")
            pending = client.get("a")
            assert counts(collector, "redis") == (None, None)  # nothing known before the await
            return [await pending, await client.get("nope"), await client.mget(["a", "b"])]
        finally:
            await raw.aclose()

    assert asyncio.run(scenario()) == [b"1", None, [b"1", None]]
    assert counts(collector, "redis") == (2.0, 2.0)


def test_without_redis_server_the_redis_tests_fail_saying_how_to_install_it(monkeypatch):
    import redis_server as helper

    monkeypatch.setattr(helper.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install redis-server"):
        helper.RedisServer().start()
