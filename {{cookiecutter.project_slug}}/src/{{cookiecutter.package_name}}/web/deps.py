"""Dependencies: what routes get from the app's lifespan, as Annotated aliases."""

from typing import Annotated, cast

from fastapi import Depends, Request

from ..queue import JobQueue, OperatorSessions, QueueAdmin
from ..settings import Settings
from .streams import StreamSlots


# `async`, though they await nothing: FastAPI runs a plain `def` dependency in a worker thread,
# a hand-off that cost more than the whole enqueue (bench/web.py).
async def get_queue(request: Request) -> JobQueue:
    return cast("JobQueue", request.state.backend)


async def get_admin(request: Request) -> QueueAdmin:
    return cast("QueueAdmin", request.state.backend)  # the same backend, seen through another port


async def get_sessions(request: Request) -> OperatorSessions:
    return cast("OperatorSessions", request.state.backend)


async def get_app_settings(request: Request) -> Settings:
    return cast("Settings", request.state.settings)


async def get_stream_slots(request: Request) -> StreamSlots:
    return cast("StreamSlots", request.state.streams)


QueueDep = Annotated[JobQueue, Depends(get_queue)]
AdminDep = Annotated[QueueAdmin, Depends(get_admin)]
SessionsDep = Annotated[OperatorSessions, Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StreamSlotsDep = Annotated[StreamSlots, Depends(get_stream_slots)]
