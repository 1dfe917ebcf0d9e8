"""The package's layering, read from its import statements: routes never import routes (they share
services such as web.submission), and web and worker never import each other."""

import ast
from pathlib import Path

import {{ cookiecutter.package_name }}

PACKAGE = Path({{ cookiecutter.package_name }}.__file__).parent
NAME = {{ cookiecutter.package_name }}.__name__


def imports(path: Path) -> set[str]:
    """The absolute names of the modules `path` imports from the package."""
    module = ".".join((NAME, *path.relative_to(PACKAGE).with_suffix("").parts))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == NAME or name.startswith(f"{NAME}.")}


def modules(under: str) -> list[Path]:
    return sorted((PACKAGE / under).rglob("*.py"))


def test_routes_and_the_dashboard_import_no_routes() -> None:
    routes = f"{NAME}.web.routes."
    for path in modules("web/routes") + modules("web/dashboard"):
        assert not any(name.startswith(routes) for name in imports(path)), path


def within(name: str, package: str) -> bool:
    """`name` is the package or one of its modules (`webhooks` is not inside `web`)."""
    return name == package or name.startswith(f"{package}.")


def test_web_and_worker_never_import_each_other() -> None:
    for path in modules("web"):
        assert not any(within(name, f"{NAME}.worker") for name in imports(path)), path
    for path in modules("worker"):
        assert not any(within(name, f"{NAME}.web") for name in imports(path)), path


def test_nothing_the_project_runs_or_tests_imports_the_optional_benchmark() -> None:
    root = PACKAGE.parent.parent  # src/<package> -> the project
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((root / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            assert not any(n == "bench" or n.startswith("bench.") for n in names), path
    assert "bench" in (root / ".dockerignore").read_text().split()
