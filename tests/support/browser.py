"""Open an HTML file in the real headless Chromium: its DOM after scripts ran, its console, a screenshot.

    page = open_in_chromium(path)            # the DOM after scripts ran, and the console messages
    assert page.count("<svg") >= 3 and not page.console_errors
    open_in_chromium(path, screenshot=png)   # also a PNG of the page

Chromium runs with a fresh profile, no network services and a virtual time budget, so timers and
promises (vega-embed renders asynchronously) finish before the DOM is dumped. Under `CI=true` a
missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CS_PIPELINE_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
]
CONSOLE = re.compile(r":CONSOLE(?::\d+)?\] \"(?P<message>.*)\", source: (?P<source>.*)$")
ERROR_WORDS = re.compile(r"error|uncaught|failed|exception", re.IGNORECASE)


@dataclass
class Page:
    dom: str
    console: list[str]

    @property
    def console_errors(self) -> list[str]:
        return [m for m in self.console if ERROR_WORDS.search(m)]

    def count(self, text: str) -> int:
        return self.dom.count(text)


def chromium() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"headless Chromium not found at {CHROMIUM}")
        pytest.skip(f"headless Chromium not found at {CHROMIUM}")
    return path


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout)


def open_in_chromium(path: Path, *, screenshot: Path | None = None, width: int = 1100, height: int = 2600,
                     budget_ms: int = 10_000, timeout: float = 90) -> Page:
    """The page's DOM after its scripts ran and its console messages; optionally a PNG screenshot."""
    url = Path(path).resolve().as_uri()
    common = [f"--virtual-time-budget={budget_ms}", f"--window-size={width},{height}"]
    done = _run([*common, "--dump-dom", url], timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    console = [m.group("message") for line in done.stderr.splitlines() if (m := CONSOLE.search(line))]
    if screenshot is not None:
        shot = _run([*common, f"--screenshot={Path(screenshot).resolve()}", url], timeout)
        if shot.returncode != 0 or not Path(screenshot).exists():
            raise RuntimeError(f"chromium screenshot failed ({shot.returncode}): {shot.stderr[-2000:]}")
    return Page(dom=done.stdout, console=console)
