"""The operator surface is closed by default: the dead letters need X-Operator-Key, and answer 403
naming OPERATOR_KEY while it is unset; the job API for clients does not change."""

import httpx
import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.settings import Settings

from ..auth import TEST_OPERATOR_KEY

OPERATOR_ROUTES = [
    ("GET", "/dead-letters"),
    ("GET", "/dead-letters/some-id"),
    ("POST", "/dead-letters/some-id/replay"),
    ("DELETE", "/dead-letters/some-id"),
    ("DELETE", "/dead-letters"),
]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Operator-Key": "wrong"}, {"X-Operator-Key": TEST_OPERATOR_KEY[:-1]}],
    ids=["missing", "wrong", "prefix"],
)
async def test_the_dead_letters_refuse_a_missing_or_wrong_operator_key(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    client.headers.pop("X-Operator-Key", None)

    response = await client.request(method, path, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "OperatorKey"
    assert "X-Operator-Key" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
async def test_without_an_operator_key_the_dead_letters_are_closed_and_say_what_to_set(
    client: httpx.AsyncClient, settings: Settings, method: str, path: str
) -> None:
    settings.operator_key = None  # the defaults: nothing set

    response = await client.request(method, path)

    assert response.status_code == 403
    assert "OPERATOR_KEY is not set" in response.json()["detail"]


async def test_the_operator_key_opens_the_dead_letters(client: httpx.AsyncClient) -> None:
    response = await client.get("/dead-letters", headers={"X-Operator-Key": TEST_OPERATOR_KEY})

    assert response.status_code == 200


async def test_the_job_api_needs_no_operator_key(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    settings.operator_key = None
    client.headers.pop("X-Operator-Key", None)

    accepted = await client.post("/jobs", json={"task": "word_count", "args": {"text": "a b"}})
    assert accepted.status_code == 202
    job_url = accepted.headers["location"]
    for path in (job_url, f"{job_url}/events"):
        assert (await client.get(path)).status_code == 200
    assert (await client.get("/tasks")).status_code == 200


def test_an_empty_operator_key_means_unset() -> None:
    # compose passes `${OPERATOR_KEY:-}` when the variable is not set.
    assert Settings.model_validate({"operator_key": ""}).operator_key is None


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("short-key", "at least 24", id="short"),
        pytest.param("replace-with-a-generated-key", "placeholder", id="placeholder"),
        pytest.param("b" * 30, "too simple", id="one-letter"),
    ],
)
def test_a_weak_operator_key_is_refused_without_showing_it(key: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as refused:
        Settings.model_validate({"operator_key": key})

    assert key not in str(refused.value)
