"""The Dockerfile: hadolint passes it, and its final stage runs a numeric non-root user and an
exec-form web command."""

import json

import pytest

from support import BIN, OPTION_SETS, Render, final_stage, run


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_dockerfile_passes_hadolint(render: Render, option_set: str) -> None:
    project = render("cookiecutter", option_set)
    run([str(BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=project)


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_the_image_runs_as_a_numeric_non_root_user_with_an_exec_form_web_command(
    render: Render, option_set: str
) -> None:
    project = render("cookiecutter", option_set)
    stage = final_stage(project)
    users = [item["value"] for item in stage if item["instruction"] == "USER"]
    [cmd] = [item["value"] for item in stage if item["instruction"] == "CMD"]

    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]} is not numeric"
    assert int(uid) > 0, "the image runs as root"
    command = json.loads(cmd)  # exec form: signals reach the process, no shell in between
    assert command[:2] == ["uvicorn", f"{project.name.replace('-', '_')}.web.app:create_app"]
