"""The per-process cap on event streams (web/streams.py); tests/integration/test_connections.py
shows it on a real server."""

import pytest
from fastapi import HTTPException

from {{ cookiecutter.package_name }}.web.streams import StreamSlots


def test_a_stream_beyond_the_cap_is_a_503_with_retry_after_until_a_slot_is_given_back() -> None:
    slots = StreamSlots(2)
    first, _second = slots.take(), slots.take()

    with pytest.raises(HTTPException) as refused:
        slots.take()
    assert refused.value.status_code == 503
    assert refused.value.headers is not None
    assert int(refused.value.headers["Retry-After"]) > 0

    first.release()
    first.release()  # a second release gives nothing more back
    assert slots.open == 1
    slots.take()
    with pytest.raises(HTTPException):
        slots.take()
