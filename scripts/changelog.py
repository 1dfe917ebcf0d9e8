"""The releases of CHANGELOG.md, for the release job and the tests (standard library only).

    python3 scripts/changelog.py untagged      # "<version> <commit>" per untagged release
    python3 scripts/changelog.py notes v0.3.0  # the entry of one release, as release notes

A release is tagged at the commit its heading names ("## v0.2.0 (2026-11-25, commit f439007)"; the
releases made before the release job existed), else at HEAD: the newest entry is released by the
commit that brings it to main. An older release without a tag must name its commit.
"""

import itertools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"
HEADING = re.compile(
    r"^## (?P<version>v\d+\.\d+\.\d+) \((?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:, commit (?P<commit>[0-9a-f]{7,40}))?\)$",
    re.MULTILINE,
)
SECTIONS = (
    "In generated projects",
    "Migrated by `copier update --trust`",
    "By hand after updating",
)


@dataclass(frozen=True)
class Release:
    version: str
    date: str
    commit: str | None
    body: str

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version[1:].split("."))

    def section(self, title: str) -> str:
        match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^### |\Z)", self.body, re.S | re.M)
        if not match:
            raise ValueError(f"{self.version} has no section {title!r}")
        return match.group(1).strip()

    @property
    def migrated(self) -> bool:
        """Whether the release has steps that `copier update --trust` runs (`_migrations`)."""
        return not self.section(SECTIONS[1]).startswith("None")


def releases(text: str | None = None) -> list[Release]:
    """The releases, newest first, each checked: sections present, versions and dates descending."""
    text = CHANGELOG.read_text(encoding="utf-8") if text is None else text
    headings = list(HEADING.finditer(text))
    found = []
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        end = following.start() if following else len(text)
        found.append(Release(**heading.groupdict(), body=text[heading.end() : end].strip() + "\n"))
    if not found:
        raise ValueError("CHANGELOG.md has no release heading like '## v1.2.3 (2024-01-31)'")
    for newer, older in itertools.pairwise(found):
        if not (newer.key > older.key and newer.date >= older.date):
            raise ValueError(
                f"{newer.version} must be newer than {older.version}, which follows it"
            )
    for release in found:
        for title in SECTIONS:
            release.section(title)
    return found


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True, cwd=CHANGELOG.parent
    ).stdout.strip()


def untagged() -> list[tuple[str, str]]:
    """(version, full commit) of each release whose tag does not exist yet, oldest first."""
    missing = []
    newest, *_ = found = releases()
    for release in reversed(found):
        tagged = subprocess.run(
            ["git", "rev-parse", "-q", "--verify", f"refs/tags/{release.version}"],
            capture_output=True,
            check=False,
            cwd=CHANGELOG.parent,
        )
        if tagged.returncode != 0:
            if release.commit is None and release is not newest:
                raise ValueError(f"{release.version} has no tag, and its entry names no commit")
            missing.append(
                (release.version, git("rev-parse", f"{release.commit or 'HEAD'}^{{commit}}"))
            )
    return missing


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["untagged"]:
            for version, commit in untagged():
                print(version, commit)
        case ["notes", version]:
            [release] = [r for r in releases() if r.version == version]
            print(release.body, end="")
        case _:
            sys.exit(__doc__)
