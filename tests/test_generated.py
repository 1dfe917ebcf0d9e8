"""Each option set's generated project passes its own test suite, both tiers, against real Redis."""

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


@pytest.mark.slow
@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_the_generated_suite_passes_with_real_redis(
    synced: Callable[[str], Path], redis_url: str, option_set: str
) -> None:
    project = synced(option_set)
    # The defaults render also proves the tier's own fallback: with no REDIS_URL it starts a
    # redis-server itself. The others use the session's server, as a CI service container would.
    env = clean_env() if option_set == "defaults" else clean_env(REDIS_URL=redis_url)

    result = run(
        [UV, "run", "--locked", "--no-sync", "pytest", "-v", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
    )

    total = counts(result.stdout)
    real_redis = re.findall(r"^tests/integration/\S+ PASSED", result.stdout, re.MULTILINE)
    assert total.get("failed", 0) == 0
    assert total.get("skipped", 0) == 0, "a generated test was skipped"
    assert total["passed"] >= 75
    assert len(real_redis) >= 19, "the integration tier did not run"
