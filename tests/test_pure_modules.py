"""The pure modules stay pure: no Django, and project imports only of other pure modules.

The list is the one place it is kept: pyproject.toml's mypy override that turns on every
--strict flag for them. Algorithms live there (bucketing, flag evaluation, canary
statistics, diffs) so they can be tested, benchmarked and simulated without a database.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = {"agentconfig", "versions", "deployments", "flags", "evaluations"}


def _pure_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [strict] = [
        override
        for override in config["tool"]["mypy"]["overrides"]
        if override.get("disallow_untyped_defs")
    ]
    return sorted(strict["module"])


PURE = _pure_modules()


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
