"""Expiring concurrency leases in Redis: one sorted set per key, changed only by Lua scripts.

Members are lease ids, scores are expiry times in ms from the Redis server's own clock
(`TIME`), so router replicas with skewed clocks still agree on when a lease ends. Each script
first removes expired members and then acts, atomically; this is `LeaseTable` in Lua.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from poolgate.state.interfaces import KVUnavailable
from poolgate.state.kv_endpoints import KVEndpoint

_NOW_AND_EXPIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""

# KEYS[1] set; ARGV: limit, lease_ms, lease_id. Returns 1 if the lease is held afterwards.
ACQUIRE_LUA = _NOW_AND_EXPIRE + """
local lease = tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  -- an idle key disappears by itself once every lease in it could have expired
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return 1
end
return 0
"""

# KEYS[1] set; ARGV: lease_ms, lease ids... Returns the ids that were no longer live.
RENEW_LUA = _NOW_AND_EXPIRE + """
local lease = tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return lost
"""

# KEYS[1] set. Returns the number of live leases.
COUNT_LUA = _NOW_AND_EXPIRE + """
return redis.call('ZCARD', KEYS[1])
"""


class RedisLeaseStore:
    """A `LeaseStore` on one Redis node, through redis-py's asyncio client.

    No client-side retries: a failed call surfaces at once as `KVUnavailable`, so the caller's
    failure mode (open or closed) applies without adding seconds of latency to the request.
    """

    def __init__(self, node: KVEndpoint, timeout_s: float) -> None:
        self.node = node
        self._redis = aioredis.Redis(
            host=node.host, port=node.port, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
        )
        self._acquire = self._redis.register_script(ACQUIRE_LUA)
        self._renew = self._redis.register_script(RENEW_LUA)
        self._count = self._redis.register_script(COUNT_LUA)

    async def acquire(self, key: str, lease_id: str, limit: int, lease_ms: int) -> bool:
        try:
            held = await self._acquire(keys=[key], args=[limit, lease_ms, lease_id])
        except (RedisError, OSError, TimeoutError) as exc:
            raise KVUnavailable(f"redis {self.node}: {exc}") from exc
        return bool(held)

    async def renew(self, key: str, lease_ids: Sequence[str], lease_ms: int) -> list[str]:
        if not lease_ids:
            return []
        try:
            lost = await self._renew(keys=[key], args=[lease_ms, *lease_ids])
        except (RedisError, OSError, TimeoutError) as exc:
            raise KVUnavailable(f"redis {self.node}: {exc}") from exc
        return [x.decode() if isinstance(x, bytes) else str(x) for x in lost]

    async def release(self, key: str, lease_id: str) -> None:
        try:
            await self._redis.zrem(key, lease_id)
        except (RedisError, OSError, TimeoutError) as exc:
            raise KVUnavailable(f"redis {self.node}: {exc}") from exc

    async def count(self, key: str) -> int:
        try:
            return int(await self._count(keys=[key], args=[]))
        except (RedisError, OSError, TimeoutError) as exc:
            raise KVUnavailable(f"redis {self.node}: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise KVUnavailable(f"redis {self.node}: {exc}") from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
