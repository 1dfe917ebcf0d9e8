"""The tasks this service accepts."""

from fastapi import APIRouter

from ...tasks import TASKS
from ..schemas import TaskOut

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.get("")
async def list_tasks() -> list[TaskOut]:
    """Each task's name, queue and the JSON schema of its arguments."""
    return [
        TaskOut(name=task.name, queue=task.queue, args_schema=task.args.model_json_schema())
        for task in TASKS.values()
    ]
