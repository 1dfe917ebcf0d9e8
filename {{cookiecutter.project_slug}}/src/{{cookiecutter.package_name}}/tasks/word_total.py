"""Example task: the words counted by the jobs it runs after, plus its own text's: the join of a
fan-out (POST /jobs/batch with `after`), or a step of a chain."""

from pydantic import BaseModel, ConfigDict, Field

from .registry import Context, Task


class WordTotalArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(default="", max_length=100_000)


async def word_total(ctx: Context, text: str = "") -> dict[str, int]:
    # Each parent's result as it stored it: word_count's, or another word_total's.
    parents = ctx.get("parents", {})
    counted = [
        result["words"]
        for result in parents.values()
        if isinstance(result, dict) and isinstance(result.get("words"), int)
    ]
    return {"words": sum(counted) + len(text.split()), "parents": len(parents)}


TASK = Task(name="word_total", function=word_total, args=WordTotalArgs)
