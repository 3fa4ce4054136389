"""Browser tests: Playwright (sync API) drives Debian's Chromium against the live server.

- Chromium comes from the system package (`apt-get install chromium`); Playwright never
  downloads a browser here. Without /usr/bin/chromium every browser test is skipped with a
  message saying so.
- Playwright's sync API keeps an event loop running in the test thread from its first use
  until the session ends, and Django refuses synchronous ORM calls while a loop runs. So
  DJANGO_ALLOW_ASYNC_UNSAFE is set from the first browser test to the end of the session
  (the tests that run after it in the same process need it too) and restored afterwards.
- Screenshots go to test-results/screenshots/ (pytest-playwright's --output folder, ignored
  by git); CI keeps them as artifacts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# The network is closed: without these Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session", autouse=True)
def _chromium_and_sync_orm() -> Iterator[None]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests need Debian's Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(.ci/run installs it)"
        )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch arguments, with Debian's Chromium and offline flags."""
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS],
    }


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Path:
    """test-results/screenshots/, created on first use."""
    folder = Path(pytestconfig.getoption("--output")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
