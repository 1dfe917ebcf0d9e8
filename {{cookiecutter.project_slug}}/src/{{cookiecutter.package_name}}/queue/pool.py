"""The web's Redis connections: a bounded pool that closes what a burst left idle.

redis-py's default pool opens a connection for every command in flight and keeps each one open
for good: a burst of requests (or of blocking reads) leaves the web holding that many connections
long after, and Redis's `maxclients` then refuses workers and operators. This pool opens at most
`max_connections`; a command beyond waits for one to come free (up to `timeout`, then a
ConnectionError, which the routes answer with a 503), and `close_idle` closes connections left
unused for `idle_timeout` seconds, so the count falls back after the burst.
"""

import asyncio
import contextlib
import time
from typing import Any
from weakref import WeakKeyDictionary

from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool

from ..cancellation import raise_if_cancelled


class BoundedPool(BlockingConnectionPool):
    def __init__(self, *, idle_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_timeout = idle_timeout
        self._idle_since: WeakKeyDictionary[AbstractConnection, float] = WeakKeyDictionary()

    def _uncontended(self) -> bool:
        """Nobody holds the pool's lock (close_idle) or waits for a connection."""
        condition = self._condition
        return not condition.locked() and not condition._waiters

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        if not (self._available_connections and self._uncontended()):
            return await super().get_connection()
        # What BlockingConnectionPool does when a connection is free and nobody waits, without
        # the lock and the timeout (a timer) it would take and cancel at once.
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        self._idle_since[connection] = time.monotonic()
        if not self._uncontended():
            await super().release(connection)
            return
        # BlockingConnectionPool.release without its lock: nobody waits to be notified.
        await ConnectionPool.release(self, connection)

    def open_connections(self) -> int:
        """Connections open now, in use or idle."""
        idle = sum(1 for connection in self._available_connections if connection.is_connected)
        return len(self._in_use_connections) + idle

    async def close_idle(self) -> int:
        """Close the connections unused for `idle_timeout`; return how many."""
        cutoff = time.monotonic() - self.idle_timeout
        # Closed under the pool's lock: no command picks one up meanwhile, and no new connection
        # opens before the old one has closed (the bound holds for sockets, not just objects).
        # redis-py keeps these lists private; the dependency is pinned below 6.
        async with self._condition:
            stale = [
                connection
                for connection in self._available_connections
                if connection.is_connected and self._idle_since.get(connection, 0) <= cutoff
            ]
            for connection in stale:
                self._available_connections.remove(connection)
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
        return len(stale)

    async def close_idle_forever(self) -> None:
        """Run `close_idle` for as long as the pool lives (a task of the web's lifespan)."""
        while True:
            await asyncio.sleep(max(0.5, min(self.idle_timeout / 2, 10)))
            await self.close_idle()
            raise_if_cancelled()  # the lifespan's end cancels this; Python 3.11 may lose that
