"""What the engines do around rendering: the answers file `copier update` needs, and the same next
steps printed at the end."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from support import ROOT, Render

QUESTIONS = (
    "author_email",
    "author_name",
    "description",
    "package_name",
    "project_name",
    "project_slug",
    "python_version",
    "use_api_key",
    "use_cron",
    "use_metrics",
    "use_tracing",
    "use_kubernetes",
    "use_dashboard",
    "use_sentry",
    "database",
)


def test_cookiecutter_writes_the_answers_file_copier_would(render: Render) -> None:
    made_by_cookiecutter = render("cookiecutter", "unusual-answers") / ".copier-answers.yml"
    made_by_copier = render("copier", "unusual-answers") / ".copier-answers.yml"

    ours = yaml.safe_load(made_by_cookiecutter.read_text(encoding="utf-8"))
    theirs = yaml.safe_load(made_by_copier.read_text(encoding="utf-8"))

    assert {k: ours[k] for k in QUESTIONS} == {k: theirs[k] for k in QUESTIONS}
    assert Path(ours["_src_path"]).is_absolute()

    # Same layout, line by line, once the source path (which differs) is set aside.
    def lines(path: Path) -> list[str]:
        return [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.startswith(("_src_path:", "_commit:"))
        ]

    assert lines(made_by_cookiecutter) == lines(made_by_copier)


def test_a_relative_template_path_is_recorded_absolute(template_dir: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path), "."],
        cwd=template_dir,
        check=True,
        capture_output=True,
    )
    answers = yaml.safe_load((tmp_path / "my-service" / ".copier-answers.yml").read_text())

    assert answers["_src_path"] == str(template_dir)


def test_both_engines_end_with_the_same_next_steps_for_the_folder_made(
    template_dir: Path, tmp_path: Path
) -> None:
    """The same steps from both engines, each naming the folder the user got (cookiecutter's output
    folder and slug, copier's destination, relative to where they ran the command)."""
    env = {**os.environ, "PWD": str(tmp_path)}  # as a shell sets it
    cookiecutter = subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", "a", str(template_dir)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    copier = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--defaults", str(template_dir), "b c"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )

    steps = (
        "Next steps:\n"
        "    cd {folder}\n"
        '    git init -q && git add -A && git commit -qm "New project from arq-fastapi"'
        "   # updates need a repository\n"
        "    uv run my-service dev     # web, workers and Redis; Ctrl-C stops them\n"
        "    uv run pytest\n"
        "Then open http://localhost:8000/docs (README.md has the curl commands, and compose for "
        "Docker).\n"
    )
    assert steps.format(folder="a/my-service") in cookiecutter.stdout
    assert steps.format(folder="'b c'") in copier.stdout + copier.stderr


def test_a_refused_answer_says_why_first_then_how_to_answer_again(
    template_dir: Path, tmp_path: Path
) -> None:
    """cookiecutter checks the answers after the last question: the reasons come first, one line
    each, then how to answer again from the saved answers; doing what it says works."""
    config = tmp_path / "cookiecutter.yaml"
    replay_dir = tmp_path / "replay"
    config.write_text(f"replay_dir: {replay_dir}/\ncookiecutters_dir: {tmp_path / 'cache'}/\n")
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(config), "PWD": str(tmp_path)}
    refused = subprocess.run(
        [
            *(sys.executable, "-m", "cookiecutter", "--no-input", str(template_dir)),
            *("package_name=queue", "author_email=nobody"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    first, second, hint, *_ = refused.stderr.splitlines()
    assert (
        first
        == "ERROR: package_name 'queue' would shadow a module the project imports: choose another"
    )
    assert second == "ERROR: author_email 'nobody' is not an email address"
    replay = replay_dir / f"{template_dir.name}.json"
    assert hint == (
        f"Your answers are saved in {replay}: correct the refused one there and run "
        f"`cookiecutter --replay {template_dir}`, or give it on the command line "
        f"(`cookiecutter {template_dir} key=value`)."
    )
    assert not (tmp_path / "my-service").exists()

    saved = json.loads(replay.read_text(encoding="utf-8"))
    saved["cookiecutter"].update(package_name="billing", author_email="billing@example.com")
    replay.write_text(json.dumps(saved), encoding="utf-8")
    again = re.search(r"`(cookiecutter --replay [^`]+)`", hint)
    assert again
    subprocess.run(
        [sys.executable, "-m", *again.group(1).split()],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    answers = yaml.safe_load((tmp_path / "my-service" / ".copier-answers.yml").read_text())
    assert (answers["package_name"], answers["author_email"]) == ("billing", "billing@example.com")
    assert answers["project_name"] == "My Service"  # the rest as first answered


def test_the_hooks_know_every_question() -> None:
    post = (ROOT / "hooks" / "post_gen_project.py").read_text()
    for question in QUESTIONS:
        assert f'"{question}"' in post
