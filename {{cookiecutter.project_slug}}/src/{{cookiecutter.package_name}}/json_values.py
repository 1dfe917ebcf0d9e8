"""What a job and a JSON answer can carry, checked strictly: no NaN or Infinity, no lone
surrogates, no integers beyond 64 bits.

Python's json module reads `NaN`, `Infinity`, `1e400` (infinity too) and `"\\ud800"` without
complaint, but no JSON answer can hold them again (the encoder refuses them) and msgpack, the
queue's format, holds no integer past 64 bits: a value like that, once accepted, breaks the first
response or enqueue that carries it (a 500). The web parses request bodies with `strict_loads`, and
`tasks.prepare` checks a job's validated arguments with `first_unencodable`.
"""

import json
import math
import re
from typing import Any

SURROGATE = re.compile("[\ud800-\udfff]")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what msgpack carries


class NotCarriedError(ValueError):
    """A JSON value that `strict_loads` refuses."""


def first_unencodable(value: Any) -> tuple[tuple[str | int, ...], str] | None:
    """Where the first value that cannot be carried is (keys and items from the top), and why;
    None when there is none. A surrogate in a Python string is always lone: json pairs the
    valid ones."""
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while pending:
        loc, item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return loc, "Input should be a finite number"
        if isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
            return loc, "Input should be an integer within 64 bits"
        if isinstance(item, str) and not item.isascii() and SURROGATE.search(item):
            return loc, "Input should be valid Unicode (a lone surrogate is not)"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and not key.isascii() and SURROGATE.search(key):
                    return (*loc, key), "Key should be valid Unicode (a lone surrogate is not)"
                pending.append(((*loc, key), child))
        elif isinstance(item, list | tuple):
            pending.extend(((*loc, index), child) for index, child in enumerate(item))
    return None


def printable(value: object) -> str:
    """Text any encoder takes (JSON, Redis): lone surrogates and the like written as escapes."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise NotCarriedError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NotCarriedError(f"{text[:30]} is too large for a finite number")
    return number


def _int64(text: str) -> int:
    if len(text) > 20:  # never convert a huge literal (that costs time, and has a limit)
        raise NotCarriedError(f"{text[:30]}... is too large for an integer within 64 bits")
    number = int(text)
    if not INT_MIN <= number <= INT_MAX:
        raise NotCarriedError(f"{text} is too large for an integer within 64 bits")
    return number


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite, parse_int=_int64)
"""What json.loads builds anew at each call with these hooks."""

MAX_DEPTH = 64  # levels of arrays and objects in a body; no job's arguments need more


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (0 for a scalar), without recursing."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level) for child in children)
    return deepest


def strict_loads(data: bytes) -> Any:
    """JSON text (UTF-8) to Python, refusing what `json.loads` lets through: raises
    json.JSONDecodeError, which FastAPI answers with a 422."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        doc = data.decode("utf-8", "replace")
        raise json.JSONDecodeError("the body is not UTF-8", doc, exc.start) from exc
    try:
        if text.startswith("\ufeff"):  # (as json.loads, which builds _DECODER anew each call)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except NotCarriedError as exc:  # json gives no position: the number's first occurrence
        literal = str(exc).split(" ", 1)[0].removesuffix("...")
        raise json.JSONDecodeError(str(exc), text, max(text.find(literal), 0)) from exc
    except RecursionError:
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, 0) from None
    if depth(value) > MAX_DEPTH:
        # Validation and error reports recurse through a value: a 2 KB body of brackets would
        # otherwise end in a RecursionError (a 500) there.
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, 0)
    # Lone surrogates arrive only as \u escapes (the UTF-8 decoding above refuses them raw).
    if "\\u" in text and (problem := first_unencodable(value)):
        loc, reason = problem
        path = "".join(f"[{part!r}]" for part in loc).encode("ascii", "backslashreplace").decode()
        raise json.JSONDecodeError(f"{reason}: body{path}", text, 0)
    return value
