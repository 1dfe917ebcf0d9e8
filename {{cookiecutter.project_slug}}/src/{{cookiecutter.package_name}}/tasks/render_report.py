"""Example long task: render a report page by page, reporting progress and stopping when asked.

It runs on the bulk queue, so its long timeout does not slow the recovery of short jobs.
"""

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from ..queue import JobCancelledError
from .registry import Context, Task


class RenderReportArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pages: int = Field(ge=1, le=1000)
    seconds_per_page: float = Field(default=0.2, ge=0, le=10)


async def render_report(ctx: Context, pages: int, seconds_per_page: float) -> dict[str, int]:
    for page in range(1, pages + 1):
        # Cooperative cancellation: stop between pages, with the work so far in a clean state.
        if await ctx["cancel_requested"]():
            raise JobCancelledError
        await asyncio.sleep(seconds_per_page)  # stands in for the real work of one page
        await ctx["progress"](100 * page / pages, f"page {page} of {pages}")
    return {"pages": pages}


TASK = Task(
    name="render_report",
    function=render_report,
    args=RenderReportArgs,
    queue="bulk",  # its timeout is the bulk queue's BULK_JOB_TIMEOUT
)
