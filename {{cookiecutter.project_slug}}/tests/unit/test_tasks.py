"""Task functions called directly with a ctx, as the worker calls them."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from {{ cookiecutter.package_name }}.tasks import TASKS, Context, Task, UnknownTaskError, prepare
from {{ cookiecutter.package_name }}.tasks.check_url import check_url
from {{ cookiecutter.package_name }}.tasks.word_count import word_count


async def test_word_count_counts_words_and_characters(ctx: Context) -> None:
    assert await word_count(ctx, "  héllo   wörld \n") == {"words": 2, "characters": 17}


async def test_check_url_uses_the_shared_client(
    ctx: Context, http_handler: list[Callable[[httpx.Request], httpx.Response]]
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(204)

    http_handler.append(answer)
    result = await check_url(ctx, "https://example.test/health")

    assert seen == ["https://example.test/health"]
    assert result["status_code"] == 204
    assert result["elapsed_ms"] >= 0


def test_prepare_returns_json_ready_arguments() -> None:
    assert prepare(TASKS, "check_url", {"url": "https://example.test"}) == {
        "url": "https://example.test/",
        "bearer_token": None,
    }


@pytest.mark.parametrize("url", ["ftp://example.test/", "not a url", "javascript:alert(1)"])
def test_prepare_refuses_urls_that_are_not_http(url: str) -> None:
    with pytest.raises(ValidationError):
        prepare(TASKS, "check_url", {"url": url})


def test_prepare_refuses_unknown_tasks() -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 'missing'"):
        prepare(TASKS, "missing", {})


class Measure(BaseModel):
    value: float  # unbounded: pydantic also takes the strings "nan" and "inf"
    label: str = "x"


async def measure(ctx: dict[str, Any], value: float, label: str) -> None:
    return None


@pytest.mark.parametrize(
    "args", [{"value": "nan"}, {"value": "-inf"}, {"value": 1, "label": "\ud800"}]
)
def test_prepare_refuses_arguments_a_job_cannot_carry(args: dict[str, Any]) -> None:
    tasks = {"measure": Task("measure", measure, Measure)}

    with pytest.raises(ValidationError) as caught:
        prepare(tasks, "measure", args)

    [error] = caught.value.errors()
    assert error["loc"] == (next(iter(args)) if len(args) == 1 else "label",)
