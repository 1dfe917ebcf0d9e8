"""cookiecutter and copier render byte-identical projects (executable bits too) for every option
set; the answers file aside, which each engine writes its own way (see test_hooks.py)."""

import pytest

from support import OPTION_SETS, Render, tree

ANSWERS_FILE = ".copier-answers.yml"


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_both_engines_render_the_same_tree(render: Render, option_set: str) -> None:
    ours = tree(render("cookiecutter", option_set), skip=[ANSWERS_FILE])
    theirs = tree(render("copier", option_set), skip=[ANSWERS_FILE])

    assert sorted(ours) == sorted(theirs), "the engines render different file lists"
    for name in sorted(ours):
        assert ours[name] == theirs[name], f"first differing file: {name}"
