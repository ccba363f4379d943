"""The dashboard in a real headless browser (Debian's chromium): the fixed fake study and
session with the right numbers, no console errors, a refresh that picks up a new trial; the
static snapshot page; and the server's edges (GET only, loopback, the token)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cappuccino.monitoring import Monitor
from cappuccino.monitoring.dashboard import TOKEN_ENV, check_bind, make_app, write_html
from tests.monitoring.browser import browser, console_errors, free_port
from tests.monitoring.fixtures import NOW, add_trial, make_session, make_study

pytestmark = pytest.mark.network_loopback  # loopback only, behind the socket guard


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return make_study(tmp_path / "study.db"), make_session(tmp_path / "s.db")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread; its base URL."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the dashboard server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(sources: tuple[str, Path]) -> Iterator[tuple[str, Monitor]]:
    url, state = sources
    monitor = Monitor([url], [state], machine=False, clock=lambda: NOW)
    with serving(make_app(monitor, refresh_s=0.3, cache_s=0.05)) as base:
        yield base, monitor
    monitor.close()


def _js(driver: Any, expr: str) -> Any:
    """Read the page in one script call (the refresh replaces its elements every 0.3 s)."""
    return driver.execute_script(f"return {expr};")


def _text(driver: Any) -> str:
    return str(_js(driver, "document.getElementById('content').innerText"))


def _figures(driver: Any) -> int:
    return int(_js(driver, "document.querySelectorAll('div.fig .main-svg').length"))


def _wait_for(driver: Any, needle: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = _text(driver)
        if needle in text:
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} never appeared; the page shows: {text[:2000]}")
        time.sleep(0.1)


def _check_numbers(text: str) -> None:
    # the session (hand-computed in tests/monitoring/fixtures.py)
    for needle in ("980,000.00", "-20,000.00", "-2.00%", "855,000.00", "840,000.00",
                   "Drawdown now -6.67%, max -6.67%", "insufficient balance",
                   "notional 5.00 below min_order_notional 10", "1 / 12.50",
                   "Orders: 3 (ACCEPTED 1, FILLED 1, REJECTED 1)"):  # fmt: skip
        assert needle in text, needle
    # the study
    for needle in ("9: COMPLETE 5, FAIL 1, PRUNED 1, RUNNING 2", "trial 2: 0.5000", "14.29%",
                   "ValueError: boom", "STALE", "7 in the last hour"):  # fmt: skip
        assert needle in text, needle


def test_the_live_page_shows_the_numbers_and_refreshes(server: tuple[str, Monitor],
                                                       sources: tuple[str, Path],
                                                       tmp_path: Path) -> None:  # fmt: skip
    base, _monitor = server
    with browser(tmp_path) as driver:
        driver.get(base + "/")
        text = _wait_for(driver, "980,000.00")
        _check_numbers(text)
        assert _js(driver, "document.getElementById('banner').dataset.status") == "amber"
        assert "trial 8: heartbeat 300 s old" in _js(driver, "document.getElementById('banner')"
                                                             ".innerText")  # fmt: skip
        assert _figures(driver) >= 3  # equity, study history, the encoder arms
        # a new trial lands in the study: the page picks it up without a reload
        add_trial(sources[0])
        _wait_for(driver, "10: COMPLETE 6, FAIL 1, PRUNED 1, RUNNING 2")
        assert console_errors(driver) == []


def test_the_static_snapshot_page_works_offline(sources: tuple[str, Path], tmp_path: Path) -> None:
    url, state = sources
    m = Monitor([url], [state], machine=False)
    out = write_html(m.snapshot(NOW), tmp_path / "dashboard.html")
    m.close()
    assert "<script src=" not in out.read_text()  # plotly.js is inside: no server needed
    with browser(tmp_path) as driver:
        driver.get(out.as_uri())
        _check_numbers(_wait_for(driver, "980,000.00"))
        assert "Static snapshot" in driver.find_element("id", "meta").text
        assert _figures(driver) >= 3
        assert console_errors(driver) == []


def _get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_api_serves_the_snapshot_and_nothing_changes_anything(
    server: tuple[str, Monitor],
) -> None:
    import json

    base, _ = server
    with urllib.request.urlopen(base + "/api/status", timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "amber" and doc["studies"][0]["best"]["value"] == 0.5
    assert doc["paper"][0]["pnl"]["equity"] == 980_000.0
    for method in ("POST", "PUT", "DELETE"):
        assert _get(base + "/api/status", method) == 405


def test_a_token_is_required_beyond_loopback(
    sources: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check_bind("127.0.0.1") is None
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ValueError, match=f"--host: 0.0.0.0 exposes .* set {TOKEN_ENV}"):
        check_bind("0.0.0.0")
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(ValueError, match="got 5 characters"):
        check_bind("0.0.0.0")
    token = "t" * 32
    monkeypatch.setenv(TOKEN_ENV, token)
    assert check_bind("0.0.0.0") == token
    url, state = sources
    m = Monitor([url], [state], machine=False, clock=lambda: NOW)
    with serving(make_app(m, token=token)) as base:
        assert _get(base + "/api/status") == 401
        assert _get(base + "/api/status?token=wrong") == 401
        assert _get(base + f"/api/status?token={token}") == 200
        assert _get(base + "/", headers={"Authorization": f"Bearer {token}"}) == 200
        assert _get(base + "/static/plotly.min.js") == 401
    m.close()
