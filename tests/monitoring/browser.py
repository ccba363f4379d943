"""Debian's chromium, headless, driven by selenium through Debian's chromium-driver.

Where they are missing a test fails in CI (``.ci/run`` installs both) and is skipped
elsewhere, saying how to install them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def need_chromium() -> None:
    if Path(CHROMIUM).is_file() and Path(DRIVER).is_file():
        return
    msg = f"{CHROMIUM} and {DRIVER} needed: apt-get install chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(msg + " (.ci/run installs them)")
    pytest.skip(msg)


@contextmanager
def browser(tmp: Path) -> Iterator[Any]:
    """A headless chromium with its console log kept; no network beyond loopback (the
    flags keep it from calling home)."""
    need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    log = tmp / "chromedriver.log"
    driver = webdriver.Chrome(service=Service(DRIVER, log_output=str(log)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
