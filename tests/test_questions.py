"""The two question files agree, and both engines refuse the same bad answers, leaving nothing."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException

from support import OPTION_SETS, ROOT, render_copier

COOKIECUTTER = json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
COPIER = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
QUESTIONS = [key for key in COOKIECUTTER if not key.startswith("_")]


def copier_questions() -> list[str]:
    return [key for key in COPIER if not key.startswith("_") and key != "cookiecutter"]


def test_both_files_ask_the_same_questions_in_the_same_order() -> None:
    assert copier_questions() == QUESTIONS


@pytest.mark.parametrize("name", QUESTIONS)
def test_defaults_choices_and_help_agree(name: str) -> None:
    ours, theirs = COOKIECUTTER[name], COPIER[name]
    assert COOKIECUTTER["__prompts__"][name] == theirs["help"]
    if isinstance(ours, list):
        assert theirs["choices"] == ours
        assert theirs["default"] == ours[0]
    elif isinstance(ours, bool):
        assert theirs["type"] == "bool"
        assert theirs["default"] is ours
    else:
        assert theirs["type"] == "str"
        # Derived defaults differ only in how they name other answers.
        assert theirs["default"] == ours.replace("cookiecutter.", "")


def test_copier_exposes_the_answers_as_cookiecutter_after_every_question() -> None:
    assert [key for key in COPIER if not key.startswith("_")][-1] == "cookiecutter"
    assert COPIER["cookiecutter"]["when"] is False


def test_every_option_is_rendered_away_from_its_default_somewhere() -> None:
    for name, default in COOKIECUTTER.items():
        if isinstance(default, (bool, list)):
            default_value = default[0] if isinstance(default, list) else default
            values = {answers.get(name, default_value) for answers in OPTION_SETS.values()}
            assert len(values) > 1, f"no option set renders {name} differently from its default"


BAD_ANSWERS = {
    "slug-with-space": ({"project_slug": "My Service"}, "project_slug"),
    "slug-starts-with-digit": ({"project_slug": "1service"}, "project_slug"),
    "slug-double-hyphen": ({"project_slug": "my--service"}, "project_slug"),
    "slug-too-long": ({"project_slug": "a" * 65}, "project_slug"),
    "name-without-ascii-letters": ({"project_name": "Ünï Çø"}, "project_slug"),
    "package-with-hyphen": ({"package_name": "my-service"}, "package_name"),
    "package-shadows-arq": ({"package_name": "arq"}, "package_name"),
    "python-too-old": ({"python_version": "3.10"}, "python_version"),
    "database-unknown": ({"database": "mysql"}, "database"),
    "description-two-lines": ({"description": "one\ntwo"}, "description"),
    "email-without-at": ({"author_email": "nobody"}, "author_email"),
    "empty-project-name": ({"project_name": "  "}, "project_name"),
    "kubernetes-slug-too-long": (
        {"project_slug": "a" * 51, "use_kubernetes": True},
        "use_kubernetes",
    ),
}


@pytest.mark.parametrize(("answers", "question"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_cookiecutter_refuses_with_a_one_line_reason_and_leaves_nothing(
    template_dir: Path,
    tmp_path: Path,
    cookies: Any,
    capfd: pytest.CaptureFixture[str],
    answers: dict[str, Any],
    question: str,
) -> None:
    result = cookies.bake(extra_context=answers, template=str(template_dir))

    assert result.exit_code != 0
    assert result.project_path is None
    # cookiecutter checks choices itself (ValueError); our pre-gen hook checks the rest.
    assert isinstance(result.exception, FailedHookException | ValueError), result.exception
    if isinstance(result.exception, ValueError):
        reasons = [str(result.exception)]
    else:
        reasons = [
            line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")
        ]
    assert reasons, "no reason was given"
    assert any(question in line for line in reasons), reasons
    # pytest-cookies bakes into tmp_path/cookies/bakeNN: nothing is left there, not even a folder.
    left = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")]
    assert set(left) <= {"cookies", "cookies/bake00"}, left


@pytest.mark.parametrize(("answers", "question"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_copier_refuses_with_a_reason_and_leaves_nothing(
    template_dir: Path, tmp_path: Path, answers: dict[str, Any], question: str
) -> None:
    with pytest.raises(ValueError, match=question):
        render_copier(template_dir, answers, tmp_path, "project")

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("question", ["project_name", "description"])
def test_copier_refuses_template_syntax_in_free_text(
    template_dir: Path, tmp_path: Path, question: str
) -> None:
    # cookiecutter would render it (README.md says so); copier would copy it verbatim. Neither is
    # what the user meant, so copier refuses it outright.
    with pytest.raises(ValueError, match="template syntax"):
        render_copier(template_dir, {question: "Uses {{ 6 * 7 }}"}, tmp_path, "project")

    assert list(tmp_path.iterdir()) == []
