"""The shared in-flight view's table in Redis: one hash, a field per gateway replica.

One exchange is one round trip (a pipeline, no transaction): write this replica's report, drop
the fields of replicas silent for long, push the key's expiry ahead, read every field. Whether a
field still counts is decided by the reader (`shared_load.PeerView`), by whether its report
advances, so no clock is compared across machines and no script is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from poolgate.state.interfaces import KVTimeout, KVUnavailable
from poolgate.state.kv_endpoints import KVEndpoint


class RedisLoadBoard:
    """A `LoadBoard` on one Redis node (redis-py asyncio; reconnects on the next call after a
    failure, no client-side retries: a failed exchange surfaces at once as `KVUnavailable`)."""

    def __init__(self, node: KVEndpoint, key: str, timeout_s: float) -> None:
        self.node = node
        self.key = key
        self._redis = aioredis.Redis(
            host=node.host, port=node.port, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
        )

    async def exchange(self, replica_id: str, report: bytes, forget: Sequence[str],
                       ttl_ms: int) -> dict[str, bytes]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self.key, replica_id, report)
        if forget:
            pipe.hdel(self.key, *forget)
        pipe.pexpire(self.key, ttl_ms)
        pipe.hgetall(self.key)
        try:
            results = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise _unavailable(self.node, exc) from exc
        table = results[-1]
        return {(k.decode(errors="replace") if isinstance(k, bytes) else str(k)): v
                for k, v in table.items()}

    async def withdraw(self, replica_id: str) -> None:
        try:
            await self._redis.hdel(self.key, replica_id)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _unavailable(self.node, exc) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()


def _unavailable(node: KVEndpoint, exc: BaseException) -> KVUnavailable:
    kind = KVTimeout if isinstance(exc, (RedisTimeout, TimeoutError)) else KVUnavailable
    return kind(f"redis {node}: {exc or type(exc).__name__}")
