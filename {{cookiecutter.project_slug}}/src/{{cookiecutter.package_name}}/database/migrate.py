"""`{{ cookiecutter.project_slug }} migrate`: the schema brought to the newest migration (Alembic's `upgrade head`).

Run once per release before web and workers start (compose's `migrate` service, the Kubernetes
Job). Safe to run twice, and by two processes at once: env.py holds a PostgreSQL advisory lock
for the whole run, so the second waits and then finds nothing to do.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config

from ..settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """Alembic's configuration without alembic.ini: the image has no project tree, only the
    package, whose migrations folder this points at."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url  # (not set_main_option: it would %-interpolate the password)
    return config


def migrate(settings: Settings, revision: str = "head") -> None:
    """Upgrade the database DATABASE_URL names to `revision`."""
    if settings.database_url is None:
        raise SystemExit("DATABASE_URL is not set: nothing to migrate")
    command.upgrade(alembic_config(settings.database_url.get_secret_value()), revision)
