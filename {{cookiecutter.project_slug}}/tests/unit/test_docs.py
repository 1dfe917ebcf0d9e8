"""The README's configuration table is the Settings class: a setting added, renamed, re-described
or given another default fails this test until the README says so (the failure prints the table)."""

from pathlib import Path

from {{ cookiecutter.package_name }}.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- settings-table: tests/unit/test_docs.py keeps it in sync with settings.py -->"
END = "<!-- /settings-table -->"


def shown(default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def settings_table() -> str:
    lines = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `{name.upper()}` | {shown(field.default)} | {field.description} |")
    return "\n".join(lines)


def test_every_setting_says_what_it_sets() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undescribed == []


def test_the_readme_lists_every_setting_as_settings_py_defines_it() -> None:
    readme = README.read_text(encoding="utf-8")
    assert START in readme, f"README.md lost its table marker {START!r}"
    table = readme.split(START, 1)[1].split(END, 1)[0].strip()
    expected = settings_table()
    assert table == expected, f"README.md's settings table is outdated; it should read:\n{expected}"
