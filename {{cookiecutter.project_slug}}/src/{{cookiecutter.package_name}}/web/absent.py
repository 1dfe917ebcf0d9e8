"""Stand-ins for the web's optional parts, for a project made without them: the same interface as
the real part, doing nothing. web.app imports each option's real part or its stand-in from here:
the only place the web knows which options the project was made with."""

from fastapi import FastAPI, params

from ..settings import Settings


def guard_jobs(settings: Settings) -> list[params.Depends]:
    """Without an API key (use_api_key) the job routes depend on nothing: open to any client."""
    return []


def mount_dashboard(app: FastAPI) -> None:
    """Without a dashboard (use_dashboard) there is nothing to mount."""


def mount_documents(app: FastAPI, guards: list[params.Depends]) -> None:
    """Without a database (database=none) there are no /documents routes."""


def mount_metrics(app: FastAPI) -> None:
    """Without metrics (use_metrics) there is no GET /metrics."""
