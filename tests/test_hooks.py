"""What the engines do around rendering: the answers file `copier update` needs, and the same next
steps printed at the end."""

import subprocess
import sys
from pathlib import Path

import yaml

from conftest import Render
from support import ROOT

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


def test_both_engines_end_with_the_same_next_steps(template_dir: Path, tmp_path: Path) -> None:
    cookiecutter = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(tmp_path / "a"),
            str(template_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    copier = subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--defaults",
            str(template_dir),
            str(tmp_path / "b"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )

    steps = (
        "Next steps:\n"
        "    cd my-service\n"
        "    uv run my-service dev     # web, workers and Redis; Ctrl-C stops them\n"
        "    uv run pytest\n"
        "Then open http://localhost:8000/docs (README.md has the curl commands, and compose for "
        "Docker).\n"
    )
    assert steps in cookiecutter.stdout
    assert steps in copier.stdout + copier.stderr


def test_the_hooks_know_every_question() -> None:
    post = (ROOT / "hooks" / "post_gen_project.py").read_text()
    for question in QUESTIONS:
        assert f'"{question}"' in post
