"""Dependencies: what routes get from the app's lifespan, as Annotated aliases."""

from typing import Annotated, cast

from fastapi import Depends, Request

from ..queue import JobQueue, OperatorSessions, QueueAdmin
from ..settings import Settings
from .streams import StreamSlots


def queue_of(request: Request) -> JobQueue:
    """The queue the lifespan opened. Read directly (not as QueueDep) by POST /jobs only: there
    FastAPI's solving of two dependencies cost about a fifth of the request's CPU (bench/web.py),
    and every job comes through that route."""
    return cast("JobQueue", request.state.backend)


def settings_of(request: Request) -> Settings:
    """The app's settings, read directly: see queue_of."""
    return cast("Settings", request.state.settings)


# `async`, though they await nothing: FastAPI runs a plain `def` dependency in a worker thread,
# a hand-off that cost more than the whole enqueue (bench/web.py).
async def get_queue(request: Request) -> JobQueue:
    return queue_of(request)


async def get_admin(request: Request) -> QueueAdmin:
    return cast("QueueAdmin", request.state.backend)  # the same backend, seen through another port


async def get_sessions(request: Request) -> OperatorSessions:
    return cast("OperatorSessions", request.state.backend)


async def get_app_settings(request: Request) -> Settings:
    return settings_of(request)


async def get_stream_slots(request: Request) -> StreamSlots:
    return cast("StreamSlots", request.state.streams)


QueueDep = Annotated[JobQueue, Depends(get_queue)]
AdminDep = Annotated[QueueAdmin, Depends(get_admin)]
SessionsDep = Annotated[OperatorSessions, Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StreamSlotsDep = Annotated[StreamSlots, Depends(get_stream_slots)]
