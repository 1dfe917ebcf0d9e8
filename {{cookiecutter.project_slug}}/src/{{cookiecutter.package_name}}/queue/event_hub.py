"""One Redis reader per web process for the live events of every job that a stream watches.

A blocking read (`XREAD BLOCK`) per open stream would hold a Redis connection per client, and a
thousand clients would hold a thousand. Here the streams of one process share a single blocking
read of every watched job's events on one connection of its own, and the hub hands each new entry
to every stream waiting on that job. A stream that joins late or resumes (its
`after` is behind what the hub has passed on) first catches up with one `XRANGE` on the pool.

A blocking read cannot take a new key while it waits: to add one, the hub appends to a stream of
its own (`<prefix>:events-hub:<random>`, one entry kept, expiring) that every read includes,
which returns the read at once; the next read includes the new key.

One read covers every watched key, so Redis refuses it whole when one key holds something else than
a stream (WRONGTYPE): the hub then finds those keys, ends their waits alone (NotAStreamError) and
reads the others on, so one bad key never ends the streams of other jobs.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .unavailable import unavailable, wrong_type

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]

BLOCK_SECONDS = 5.0  # longest blocking read; then keys no stream waits on leave the read
KEEP_SECONDS = 5.0  # a key nobody waits on stays this long (a stream between two waits)
ENTRIES_PER_READ = 100  # per key and read; a longer backlog comes in the next read
WAKE_TTL = 3600  # the hub's own stream expires when the process has long gone
RETRY_SECONDS = 1.0  # pause after a failed read, while Redis is away


def entry_id(value: bytes | str) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as a comparable pair."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class NotAStreamError(Exception):
    """The key a stream waits on holds something else than a stream: no job's events."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key!r} is not a stream")
        self.key = key


@dataclass(eq=False)
class _Waiter:
    after: tuple[int, int]
    future: "asyncio.Future[list[Entry]]"


@dataclass(eq=False)
class _Watch:
    cursor: str
    """The last entry id the hub has read of this key (or a waiter's start, before any)."""
    waiters: set[_Waiter] = field(default_factory=set)
    used: float = field(default_factory=time.monotonic)


class EventHub:
    """Blocking reads of job event streams, shared by every stream of the process."""

    def __init__(self, redis: Redis, open_reader: Callable[[], Redis], prefix: str) -> None:
        self._redis = redis  # the pool: catch-up reads and wake notices, never blocking
        self._open_reader = open_reader
        self._reader: Redis | None = None
        self._wake_key = f"{prefix}:events-hub:{uuid.uuid4().hex}"
        self._wake_cursor = "0-0"
        self._watched: dict[str, _Watch] = {}
        self._blocked_on: frozenset[str] | None = None  # the keys of the read in flight
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def wait(self, key: str, after: str, within: float) -> list[Entry]:
        """Entries of stream `key` after id `after`, waiting up to `within` seconds for one;
        [] when none came. Raises what Redis raises when it is away."""
        watch = self._watched.get(key)
        if watch is None:
            watch = self._watched[key] = _Watch(cursor=after)
        waiter = _Waiter(entry_id(after), asyncio.get_running_loop().create_future())
        watch.waiters.add(waiter)
        watch.used = time.monotonic()
        try:
            if waiter.after < entry_id(watch.cursor):
                # The hub has passed on entries this waiter has not seen (it joined late or
                # resumes): read them on the pool. Registered first, so none falls in between.
                missed: list[Entry] = await self._redis.xrange(key, min=f"({after}", max="+")
                if missed:
                    return missed
            self._start()
            if self._blocked_on is not None and key not in self._blocked_on:
                # (Between two reads, the next one includes the key anyway.)
                try:
                    await self._wake()
                except RedisError as exc:
                    # A write, which a full Redis refuses while reads go on: the key joins
                    # the next read instead, at most BLOCK_SECONDS later.
                    if not unavailable(exc):
                        raise
            # Not wait_for: a timeout of the read itself must reach the caller as an error.
            done, _ = await asyncio.wait({waiter.future}, timeout=within)
            return waiter.future.result() if done else []
        finally:
            watch.waiters.discard(waiter)
            watch.used = time.monotonic()

    async def close(self) -> None:
        # A flag as well as the cancel: redis-py swallows a CancelledError that lands while it
        # closes a connection, and the reader would then wait on `_changed` for good.
        self._closing = True
        self._changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_reader()

    def _start(self) -> None:
        self._changed.set()
        if self._closing:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read_forever(), name="event-hub")

    async def _wake(self) -> None:
        """Return the read in flight, so that the next one includes a new key."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake_key, {"k": "1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, WAKE_TTL)
            await pipe.execute()

    async def _close_reader(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            with contextlib.suppress(Exception):
                await reader.aclose()
                await reader.connection_pool.disconnect()

    def _forget_unwatched(self) -> None:
        stale = time.monotonic() - KEEP_SECONDS
        for key in [k for k, w in self._watched.items() if not w.waiters and w.used < stale]:
            del self._watched[key]

    async def _read_forever(self) -> None:
        while not self._closing:
            self._forget_unwatched()
            if not self._watched:
                # Nothing to read: hold no connection until a stream waits again.
                await self._close_reader()
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                await self._read_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away (or a bug): every waiter hears of it
                if await self._drop_non_streams(exc):
                    continue  # the other keys read on at once
                away = unavailable(exc)
                log.warning("reading job events failed: %s", exc, exc_info=not away)
                self._fail_waiters(exc)
                await self._close_reader()
                await asyncio.sleep(RETRY_SECONDS)

    async def _read_once(self) -> None:
        if self._reader is None:
            self._reader = self._open_reader()
        streams: dict[Any, Any] = {key: watch.cursor for key, watch in self._watched.items()}
        streams[self._wake_key] = self._wake_cursor
        self._blocked_on = frozenset(streams)
        try:
            reply = await self._reader.xread(
                streams, count=ENTRIES_PER_READ, block=int(BLOCK_SECONDS * 1000)
            )
        finally:
            self._blocked_on = None
        for raw_key, entries in reply or []:
            key = raw_key.decode()
            if not entries:
                continue
            if key == self._wake_key:
                self._wake_cursor = entries[-1][0].decode()
                continue
            watch = self._watched.get(key)
            if watch is None:
                continue
            watch.cursor = entries[-1][0].decode()
            for waiter in watch.waiters:
                fresh = [entry for entry in entries if entry_id(entry[0]) > waiter.after]
                if fresh and not waiter.future.done():
                    waiter.future.set_result(fresh)

    async def _drop_non_streams(self, error: Exception) -> bool:
        """After a read refused for a key of another type: end the waits on every watched key
        that is not a stream, and stop reading those keys. False if none was found (then the
        error is not theirs, and every waiter hears of it)."""
        if not wrong_type(error):
            return False
        keys = list(self._watched)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.type(key)
                kinds = await pipe.execute()
        except RedisError:
            return False
        found = zip(keys, kinds, strict=True)
        bad = [key for key, kind in found if kind not in (b"stream", b"none")]
        for key in bad:
            log.warning("job events key %s holds no stream; its streams end", key)
            for waiter in self._watched.pop(key).waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(NotAStreamError(key))
        return bool(bad)

    def _fail_waiters(self, error: Exception) -> None:
        for watch in self._watched.values():
            for waiter in watch.waiters:
                if not waiter.future.done():
                    # One exception each: a shared one would pile every waiter's traceback on.
                    failed = RedisConnectionError(f"reading job events: {error}")
                    waiter.future.set_exception(failed)
