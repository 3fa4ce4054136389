"""The pure modules stay pure: no Django, and project imports only of other pure modules.

The list is the one place it is kept: pyproject.toml's first mypy override that turns on
every --strict flag (the second one, for the services and selectors, follows it).
Algorithms live there (bucketing, flag evaluation, canary statistics, diffs, file formats)
so they can be tested, benchmarked and simulated without a database.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = {"agentconfig", "versions", "deployments", "flags", "evaluations"}


def _strict_overrides() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [
        override["module"]
        for override in config["tool"]["mypy"]["overrides"]
        if override.get("disallow_untyped_defs")
    ]


PURE_LIST, SERVICES_LIST = _strict_overrides()
PURE = sorted(PURE_LIST)


def _exists(module: str) -> bool:
    """A module file, or for `package.*` a package directory."""
    path = ROOT / module.removesuffix(".*").replace(".", "/")
    if module.endswith(".*"):
        return (path / "__init__.py").is_file()
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from flags import semver` imports the module flags.semver
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_pure_modules__the_list_is_read__and_names_real_files():
    assert "deployments.canary_analysis" in PURE and "agentconfig.core.bucketing" in PURE
    for module in PURE:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_strict_services__the_list_names_real_modules__none_of_them_pure():
    assert "deployments.services.releases" in SERVICES_LIST
    for module in SERVICES_LIST:
        assert _exists(module), module
    assert not set(SERVICES_LIST) & set(PURE)


@pytest.mark.parametrize("module", PURE)
def test_pure_module__imports_no_django_and_only_pure_project_modules(module):
    imports = _imports(module)

    assert not {name for name in imports if name.split(".")[0] == "django"}
    project = {
        name
        for name in imports
        if name.split(".")[0] in PROJECT_PACKAGES
        and (ROOT / (name.replace(".", "/") + ".py")).is_file()
    }
    assert project <= set(PURE), f"{module} imports {sorted(project - set(PURE))}"
