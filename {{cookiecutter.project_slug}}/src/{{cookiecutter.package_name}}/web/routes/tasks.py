"""The tasks this service accepts."""

from fastapi import APIRouter

from ...tasks import TASKS
from ..schemas import TaskOut

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.get("")
async def list_tasks() -> list[TaskOut]:
    """Each task's name, queue, the JSON schema of its arguments, and its limits."""
    return [TaskOut.of(task) for task in TASKS.values() if not task.internal]
