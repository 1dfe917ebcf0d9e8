"""Example task: count the words and characters of a text (CPU-light, no I/O)."""

import logging

from pydantic import BaseModel, ConfigDict, Field

from .registry import Context, Task

log = logging.getLogger(__name__)


class WordCountArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000)


async def word_count(ctx: Context, text: str) -> dict[str, int]:
    words = len(text.split())
    log.info("counted %d words (job %s)", words, ctx.get("job_id"))
    return {"words": words, "characters": len(text)}


TASK = Task(name="word_count", function=word_count, args=WordCountArgs)
