"""Background setup for shell blocks: a real redis-server on a free port, with a few lookups done.

Prints ``PORTS 6379=<port>`` and ``READY``, then waits for SIGINT and stops the server.
"""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for redis_server

import redis  # noqa: E402
from redis_server import RedisServer  # noqa: E402

server = RedisServer().start()
client = redis.Redis(host="127.0.0.1", port=server.port)
client.set("answer:q1", "42")
client.get("answer:q1")  # a hit
client.get("answer:q2")  # a miss
client.close()
print(f"PORTS 6379={server.port}", flush=True)
print("READY", flush=True)
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))  # also when started with SIGINT ignored
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    signal.pause()
finally:
    server.stop()
