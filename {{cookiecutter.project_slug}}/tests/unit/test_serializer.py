"""The job serializer: plain data round-trips, exceptions travel as data, pickle is refused."""

import os
import pickle
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.queue.serializer import (
    RemoteError,
    UnserializableError,
    deserialize,
    serialize,
)


class Invoice(BaseModel):
    number: str
    total: Decimal


def test_plain_and_typed_values_round_trip() -> None:
    value = {
        "none": None,
        "flag": True,
        "count": 3,
        "ratio": 0.5,
        "text": "grüße ✓",
        "raw": b"\x00\xff",
        "items": [1, [2, 3]],
        "aware": datetime(2026, 11, 27, 12, 30, tzinfo=UTC),
        "naive": datetime(2026, 11, 27, 12, 30),
        "day": date(2026, 11, 27),
        "clock": time(8, 15, 30),
        "span": timedelta(days=2, seconds=5, microseconds=7),
        "id": uuid4(),
        "money": Decimal("12.30"),
        7: "integer keys stay integers",
    }

    assert deserialize(serialize(value)) == value


def test_tuples_and_sets_come_back_as_lists_and_models_as_dicts() -> None:
    value = {"pair": (1, 2), "tags": {"b", "a"}, "invoice": Invoice(number="A-1", total=Decimal(5))}

    assert deserialize(serialize(value)) == {
        "pair": [1, 2],
        "tags": ["a", "b"],
        "invoice": {"number": "A-1", "total": Decimal(5)},
    }


def test_an_exception_travels_as_its_type_message_and_traceback() -> None:
    try:
        raise ValueError("the invoice has no lines")
    except ValueError as exc:
        error = deserialize(serialize(exc))

    assert isinstance(error, RemoteError)
    assert (error.type_name, str(error)) == ("ValueError", "the invoice has no lines")
    assert "Traceback" in error.traceback
    assert "test_an_exception_travels" in error.traceback
    assert deserialize(serialize(error)).type_name == "ValueError"  # and again, unchanged


def test_values_that_would_need_pickle_are_refused_by_name() -> None:
    with pytest.raises(UnserializableError, match="cannot serialize Widget without pickle"):
        serialize({"thing": Widget()})


class Widget:
    """Some object of the application's own."""


class Exploit:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_payload_is_refused_not_executed(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Exploit(marker), protocol=protocol)

    with pytest.raises(ValueError, match="not a job payload of this service"):
        deserialize(payload)

    assert not marker.exists()
