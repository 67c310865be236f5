"""``tinyllm-instrument cache-stats``: cache hits, misses and hit rate, from the kit and Redis."""

from __future__ import annotations

import json
from typing import Any

import click
from click.core import ParameterSource

from . import cli
from ._options import json_option, metrics_url_option, timeout_option
from ._scrape import fetch_metrics, sample_totals

HITS, MISSES = "tinyllm_cache_hits_total", "tinyllm_cache_misses_total"
#: The ``source`` when the counters are this command's own, not a running app's.
CLI_PROCESS = "cli process"


def _rate(hits: float, misses: float) -> float | None:
    total = hits + misses
    return None if total == 0 else hits / total


def _rate_text(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


def kit_cache_stats(metrics_url: str | None, timeout: float) -> dict[str, dict[str, Any]]:
    """Hits, misses and hit rate per cache_type from the kit's counters.

    Args:
        metrics_url: a running app's /metrics; None for this process's collector.
        timeout: seconds to wait for ``metrics_url``.

    Returns:
        ``{cache_type: {"hits": int, "misses": int, "hit_rate": float | None}}``, sorted by type.

    Raises:
        click.ClickException: ``metrics_url`` cannot be read.
    """
    if metrics_url is None:
        from ..metrics import get_metrics_collector

        families = list(get_metrics_collector().registry.collect())
    else:
        families = fetch_metrics(metrics_url, timeout)
    hits = sample_totals(families, HITS, "cache_type")
    misses = sample_totals(families, MISSES, "cache_type")
    return {
        cache_type: {
            "hits": int(hits.get(cache_type, 0)),
            "misses": int(misses.get(cache_type, 0)),
            "hit_rate": _rate(hits.get(cache_type, 0), misses.get(cache_type, 0)),
        }
        for cache_type in sorted(set(hits) | set(misses))
    }


def redis_stats(host: str, port: int, db: int, timeout: float) -> dict[str, Any]:
    """The server's keyspace hits and misses (``INFO stats``, server-wide) and db's key count.

    Raises:
        click.ClickException: the redis client is not installed, or the server cannot be reached
            or refuses the command.
    """
    try:
        import redis
    except ImportError:
        raise click.ClickException(
            "--backend redis needs the redis client package: pip install redis"
        ) from None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One attempt: a look at the server, not a workload that should ride out a blip.
    client = redis.Redis(
        host=host,
        port=port,
        db=db,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        stats = client.info("stats")
        server = client.info("server")
        keyspace = client.info("keyspace")
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read INFO from Redis at {host}:{port}: {exc}") from None
    finally:
        client.close()
    hits, misses = int(stats["keyspace_hits"]), int(stats["keyspace_misses"])
    db_info = keyspace.get(f"db{db}") or {}
    return {
        "host": host,
        "port": port,
        "db": db,
        "redis_version": server.get("redis_version"),
        "keyspace_hits": hits,
        "keyspace_misses": misses,
        "hit_rate": _rate(hits, misses),
        "keys": int(db_info.get("keys", 0)),
    }


def _print_kit(caches: dict[str, dict[str, Any]], source: str) -> None:
    click.echo(f"Kit counters ({HITS} / {MISSES}, from {source}):")
    if not caches:
        click.echo("  no cache lookups recorded")
        return
    width = max(len("cache_type"), *(len(name) for name in caches))
    click.echo(f"  {'cache_type':<{width}}  {'hits':>8}  {'misses':>8}  {'hit rate':>8}")
    for name, c in caches.items():
        rate = _rate_text(c["hit_rate"])
        click.echo(f"  {name:<{width}}  {c['hits']:>8}  {c['misses']:>8}  {rate:>8}")


@cli.command("cache-stats")
@click.option(
    "--backend",
    type=click.Choice(["memory", "redis"]),
    default="memory",
    show_default=True,
    help="memory: the kit's counters; redis: a Redis server's INFO stats beside them.",
)
@click.option("--redis-host", default="localhost", show_default=True)
@click.option("--redis-port", type=click.IntRange(1, 65535), default=6379, show_default=True)
@click.option("--redis-db", type=click.IntRange(0), default=0, show_default=True)
@metrics_url_option("Read the kit's counters from a running app's /metrics instead.")
@timeout_option("Seconds to wait for Redis and --metrics-url.")
@json_option()
@click.pass_context
def cache_stats(
    ctx: click.Context,
    backend: str,
    redis_host: str,
    redis_port: int,
    redis_db: int,
    metrics_url: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Show cache hits, misses and hit rate per cache_type.

    The kit's counters are this CLI process's own (a fresh one: none counted) unless
    --metrics-url points at a running app. With
    --backend redis, the Redis server's keyspace_hits / keyspace_misses (server-wide, all dbs)
    are shown beside the kit's counters for cache_type="redis".
    """
    if backend == "memory":
        for name in ("redis_host", "redis_port", "redis_db"):
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
                flag = "--" + name.replace("_", "-")
                raise click.UsageError(f"{flag} only applies to --backend redis")
    source = metrics_url or CLI_PROCESS
    report: dict[str, Any] = {"backend": backend, "source": source}
    if backend == "redis":
        report["redis"] = redis_stats(redis_host, redis_port, redis_db, timeout)
        kit = kit_cache_stats(metrics_url, timeout)
        report["caches"] = {"redis": kit.get("redis", {"hits": 0, "misses": 0, "hit_rate": None})}
    else:
        report["caches"] = kit_cache_stats(metrics_url, timeout)
    if as_json:
        click.echo(json.dumps(report))
        return
    if backend == "redis":
        r = report["redis"]
        click.echo(f"Redis {r['host']}:{r['port']} (redis_version {r['redis_version']}):")
        click.echo(f"  keyspace_hits:   {r['keyspace_hits']}")
        click.echo(f"  keyspace_misses: {r['keyspace_misses']}")
        click.echo(f"  hit rate:        {_rate_text(r['hit_rate'])}")
        click.echo(f"  keys in db {r['db']}:    {r['keys']}")
        click.echo("")
    _print_kit(report["caches"], metrics_url or "this CLI process, not your app")
