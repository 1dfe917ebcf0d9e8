"""Job arguments and results without pickle: msgpack, with typed extensions for what JSON lacks.

arq pickles by default, so whoever can write to Redis runs code in every worker and every web
process that reads a job. This serializer only ever builds plain data: a planted pickle payload is
refused as unreadable, never executed. The web pool, every worker and every status read use it.

Round-trips: None, bool, int, float, str, bytes, lists (tuples come back as lists), dicts,
datetime, date, time, timedelta, UUID, Decimal; pydantic models travel as their `model_dump()`;
exceptions (arq stores a failed job's exception as its result) as `RemoteError` with the original
type, message and traceback.
"""

import traceback
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgpack
from pydantic import BaseModel

_DATETIME, _DATE, _TIME, _TIMEDELTA, _UUID, _DECIMAL, _ERROR = range(1, 8)


class RemoteError(Exception):
    """An exception raised in another process, as it was recorded: type, message, traceback."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback_text

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"RemoteError({self.type_name}: {self.message})"


class UnserializableError(TypeError):
    """A value that this serializer does not carry (it would need pickle)."""


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, default=_default, use_bin_type=True, datetime=False)
    return packed


def _default(value: Any) -> Any:
    # datetime is a subclass of date: test it first.
    if isinstance(value, datetime):
        return msgpack.ExtType(_DATETIME, value.isoformat().encode())
    if isinstance(value, date):
        return msgpack.ExtType(_DATE, value.isoformat().encode())
    if isinstance(value, time):
        return msgpack.ExtType(_TIME, value.isoformat().encode())
    if isinstance(value, timedelta):
        return msgpack.ExtType(_TIMEDELTA, _pack([value.days, value.seconds, value.microseconds]))
    if isinstance(value, UUID):
        return msgpack.ExtType(_UUID, value.bytes)
    if isinstance(value, Decimal):
        return msgpack.ExtType(_DECIMAL, str(value).encode())
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, RemoteError):
        return msgpack.ExtType(_ERROR, _pack([value.type_name, value.message, value.traceback]))
    if isinstance(value, BaseException):
        text = "".join(traceback.format_exception(value))
        return msgpack.ExtType(_ERROR, _pack([type(value).__qualname__, str(value), text]))
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise UnserializableError(f"cannot serialize {type(value).__qualname__} without pickle")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _DATETIME:
        return datetime.fromisoformat(data.decode())
    if code == _DATE:
        return date.fromisoformat(data.decode())
    if code == _TIME:
        return time.fromisoformat(data.decode())
    if code == _TIMEDELTA:
        days, seconds, microseconds = deserialize(data)
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if code == _UUID:
        return UUID(bytes=data)
    if code == _DECIMAL:
        return Decimal(data.decode())
    if code == _ERROR:
        type_name, message, traceback_text = deserialize(data)
        return RemoteError(type_name, message, traceback_text)
    raise ValueError(f"unknown msgpack extension {code}")


def serialize(value: Any) -> bytes:
    """Bytes for Redis: arq's job and result dicts, with everything they hold."""
    return _pack(value)


def deserialize(data: bytes) -> Any:
    """The value back; anything that is not this format (a pickle, say) raises ValueError."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"not a job payload of this service: {exc}") from exc
