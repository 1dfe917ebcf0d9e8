"""compose's Redis runs with the options the dev runner and the tests give theirs
(dev.REDIS_OPTIONS): what README "Capacity" measured is what compose deploys."""

import json
import re
from pathlib import Path

from {{ cookiecutter.package_name }}.dev import REDIS_OPTIONS

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def test_compose_starts_redis_with_the_measured_options() -> None:
    service = COMPOSE.read_text().split("\n  redis:\n", 1)[1].split("\n  web:\n", 1)[0]
    found = re.search(r"^    command: (\[.*\])$", service, re.MULTILINE)
    assert found, service
    command = json.loads(found.group(1))
    assert command[0] == "redis-server"
    assert " ".join(REDIS_OPTIONS) in " ".join(command)
    assert "--maxmemory-policy noeviction" in " ".join(command)
