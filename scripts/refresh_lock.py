"""Refresh the generated project's uv.lock: `uv run python scripts/refresh_lock.py [--upgrade]`.

The template ships a lockfile so that generation needs no network. Dependencies vary with one
answer only, `database`: a project made without a database locks none of its packages. This script
locks a render of each answer, the postgres one starting from the other's lock so that the packages
both share keep one version, and writes one template lock: what both locks hold written once,
what only one holds inside a Jinja condition on the answer. The root package's name goes back in as
a template variable. tests/test_render.py runs `uv lock --check` on every render to hold it.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter
from uv import find_uv_bin

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "{{cookiecutter.project_slug}}"
SLUG = "lock-refresh"
SEPARATOR = "\n\n"
POSTGRES = '{% if cookiecutter.database == "postgres" %}'
NONE = '{% if cookiecutter.database != "postgres" %}'
END = "{% endif %}"


def render(database: str, out: Path) -> Path:
    return Path(
        cookiecutter(
            str(ROOT),
            no_input=True,
            output_dir=str(out),
            accept_hooks=False,
            extra_context={"project_slug": SLUG, "database": database},
        )
    )


def lock(project: Path, upgrade: bool) -> str:
    command = [find_uv_bin(), "lock", "--python", sys.executable]
    if upgrade:
        command.append("--upgrade")
    subprocess.run(command, cwd=project, check=True)
    return (project / "uv.lock").read_text(encoding="utf-8")


def blocks(lock_text: str) -> list[str]:
    """The lock's parts: its header, then one part per [[package]] (blank-line separated)."""
    parts = lock_text.rstrip("\n").split(SEPARATOR + "[[package]]\n")
    return [parts[0]] + ["[[package]]\n" + part for part in parts[1:]]


def merge(without: list[str], with_db: list[str]) -> str:
    """One text that renders to `without` for database=none and to `with_db` for postgres.

    Both lists keep uv's order (packages by name), so a merge of the two sorted sequences keeps it
    in each rendering. A part only one side has is wrapped in its condition, the separator before
    it inside: the other side renders as if it were never there.
    """
    head_none, head_db = without[0], with_db[0]
    same = head_none == head_db
    text = head_none if same else f"{NONE}{head_none}{END}{POSTGRES}{head_db}{END}"
    a, b = without[1:], with_db[1:]
    i = j = 0
    while i < len(a) or j < len(b):
        if i < len(a) and j < len(b) and a[i] == b[j]:
            text += SEPARATOR + a[i]
            i, j = i + 1, j + 1
        elif j >= len(b) or (i < len(a) and key(a[i]) <= key(b[j])):
            if j < len(b) and key(a[i]) == key(b[j]):  # the same package, differently locked
                text += f"{NONE}{SEPARATOR}{a[i]}{END}{POSTGRES}{SEPARATOR}{b[j]}{END}"
                i, j = i + 1, j + 1
            else:
                text += f"{NONE}{SEPARATOR}{a[i]}{END}"
                i += 1
        else:
            text += f"{POSTGRES}{SEPARATOR}{b[j]}{END}"
            j += 1
    return text + "\n"


def key(block: str) -> str:
    """A part's sort key as uv orders them: the package's name line, then its version line."""
    lines = block.splitlines()
    return "\n".join(lines[1:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upgrade", action="store_true", help="take the newest allowed versions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = render("none", Path(tmp) / "none")
        without = lock(plain, args.upgrade)
        with_db_project = render("postgres", Path(tmp) / "postgres")
        # Start from the other lock: uv keeps the versions it can, so shared packages agree.
        (with_db_project / "uv.lock").write_text(without, encoding="utf-8")
        with_db = lock(with_db_project, upgrade=False)
    merged = merge(blocks(without), blocks(with_db))
    marker = f'name = "{SLUG}"'
    if merged.count(marker) != 2 and merged.count(marker) != 1:
        raise SystemExit(f"expected the root package in uv.lock, found {merged.count(marker)}")
    merged = merged.replace(marker, 'name = "{{ cookiecutter.project_slug }}"')
    (TREE / "uv.lock").write_text(merged, encoding="utf-8")
    print(f"wrote {TREE / 'uv.lock'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
