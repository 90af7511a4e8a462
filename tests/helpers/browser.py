"""A real browser for tests: Debian's headless Chromium driven by Selenium through ``chromedriver``.

Nothing is downloaded: the browser and its driver are the system's (``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them), and Selenium is given the driver's path so its own
manager never looks for one. Tests skip, saying what to install, where either is missing.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

import pytest

INSTALL = "apt-get install -y chromium chromium-driver (.ci/run installs them)"


def _find(*names: str) -> str | None:
    for n in names:
        found = shutil.which(n) or (f"/usr/bin/{n}" if Path(f"/usr/bin/{n}").is_file() else None)
        if found:
            return found
    return None


def chromium_or_skip() -> tuple[str, str]:
    """(browser, driver) paths, or the test is skipped with what to install."""
    pytest.importorskip("selenium", reason="selenium is not installed (the dev extra: pip install -e '.[dev]')")
    browser = _find("chromium", "chromium-browser")
    driver = _find("chromedriver")
    if browser is None or driver is None:
        pytest.skip(f"Chromium or chromedriver is not installed: {INSTALL}")
    return browser, driver


@contextlib.contextmanager
def headless_chromium(size: tuple[int, int] = (1400, 900)) -> Iterator[object]:
    """A headless Chromium session (Selenium WebDriver) that keeps the page's console messages
    (``driver.get_log("browser")``); quit at the end of the block."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--autoplay-policy=no-user-gesture-required", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_script_timeout(20)
        yield driver
    finally:
        driver.quit()


def console_errors(driver: object) -> list[str]:
    """The page's console messages at level SEVERE (errors, failed loads, CSP violations) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]  # type: ignore[attr-defined]
