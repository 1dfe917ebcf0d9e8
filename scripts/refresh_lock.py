"""Refresh the generated project's uv.lock: `uv run python scripts/refresh_lock.py [--upgrade]`.

The template ships a lockfile so that generation needs no network. Its only answer-dependent line is
the root package's name, which this script puts back as a template variable. Dependencies must not
vary with answers (tests/test_render.py runs `uv lock --check` on every render to hold that).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upgrade", action="store_true", help="take the newest allowed versions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(
            cookiecutter(
                str(ROOT),
                no_input=True,
                output_dir=tmp,
                accept_hooks=False,
                extra_context={"project_slug": SLUG},
            )
        )
        command = [find_uv_bin(), "lock", "--python", sys.executable]
        if args.upgrade:
            command.append("--upgrade")
        subprocess.run(command, cwd=project, check=True)
        lock = (project / "uv.lock").read_text(encoding="utf-8")
    marker = f'name = "{SLUG}"'
    if lock.count(marker) != 1:
        raise SystemExit(f"expected the root package once in uv.lock, found {lock.count(marker)}")
    lock = lock.replace(marker, 'name = "{{ cookiecutter.project_slug }}"')
    (TREE / "uv.lock").write_text(lock, encoding="utf-8")
    print(f"wrote {TREE / 'uv.lock'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
