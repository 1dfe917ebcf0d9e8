"""The generated Dependabot configuration: valid, and weekly grouped updates of every ecosystem."""

import pytest
import yaml

from support import BIN, OPTION_SETS, Render, run


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_dependabot_updates_every_ecosystem_weekly_in_groups(
    render: Render, option_set: str
) -> None:
    project = render("cookiecutter", option_set)
    config = project / ".github" / "dependabot.yml"
    run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.dependabot",
            ".github/dependabot.yml",
        ],
        cwd=project,
    )
    updates = yaml.safe_load(config.read_text())["updates"]
    assert sorted(update["package-ecosystem"] for update in updates) == [
        "docker",
        "docker-compose",
        "github-actions",
        "uv",
    ]
    for update in updates:
        assert update["directory"] == "/"
        assert update["schedule"]["interval"] == "weekly"
        assert update["groups"], update["package-ecosystem"]
    # Each ecosystem finds its files where it looks.
    for name in ("pyproject.toml", "uv.lock", "Dockerfile", "compose.yaml"):
        assert (project / name).is_file(), name
    assert any((project / ".github" / "workflows").glob("*.yml"))
