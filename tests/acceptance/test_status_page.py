"""The status page in a real browser: headless Chromium opens /status while a simulated
provider is down and after it recovers; the DOM must show the incident and the affected
provider, and screenshots are kept in artifacts/ to look at."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO_ROOT, Gateway, wait_until

ARTIFACTS = REPO_ROOT / "artifacts"

STATUS = """[status]
title = "Outlast acceptance status"
min_requests = 3
window = "3s"
breaker_open_for = "1s"
resolve_after = "2s"
interval = "200ms"
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = shutil.which("chromium")
        if path:
            return path
    pytest.skip("headless Chromium is not installed; run: sudo apt-get install -y chromium")


def browse(url: str, screenshot: Path) -> str:
    """Screenshot the page and return its DOM as Chromium rendered it."""
    ARTIFACTS.mkdir(exist_ok=True)
    common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--no-first-run", "--disable-sync",
              "--window-size=1200,1600"]
    browser = chromium()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, *common, f"--user-data-dir={profile}",
                        f"--screenshot={screenshot}", url],
                       check=True, timeout=60, capture_output=True)
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([browser, *common, f"--user-data-dir={profile}", "--dump-dom", url],
                             check=True, timeout=60, capture_output=True, text=True)
    assert screenshot.exists() and screenshot.stat().st_size > 0
    return dom.stdout


def unresolved(gw: Gateway) -> list:
    r = httpx.get(f"http://127.0.0.1:{gw.port}/api/v2/incidents/unresolved.json", timeout=5)
    r.raise_for_status()
    return r.json()["incidents"]


@pytest.fixture
def status_gateway(outlast_bin, workdir, start_sim, request):
    down = start_sim("flaky")
    up = start_sim("steady")
    gw = Gateway(outlast_bin, workdir, f"status-{time.monotonic_ns()}", [down, up],
                 {"chat": ["flaky/gpt-4o-mini", "steady/gpt-4o-mini"]}, extra=STATUS)
    request.addfinalizer(gw.stop)
    return gw, down, up


def test_status_page_in_chromium_during_and_after_an_outage(status_gateway):
    gw, down, _up = status_gateway
    client = gw.client()
    page = f"http://127.0.0.1:{gw.port}/status"

    down.patch(down=True)

    def answered_and_incident() -> bool:
        r = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content, "failover must keep answering"
        return len(unresolved(gw)) == 1

    wait_until(answered_and_incident, 20.0, "an incident while flaky is down")
    dom = browse(page, ARTIFACTS / "status-down.png")
    assert "Current incidents" in dom
    assert "Elevated errors on flaky/gpt-4o-mini" in dom
    assert 'data-component="flaky/gpt-4o-mini"' in dom
    assert "Outage" in dom  # Partial or Major Outage on the affected provider
    assert "<script" not in dom

    zh = browse(page + "?lang=zh-CN", ARTIFACTS / "status-down-zh.png")
    assert "当前事件" in zh and "flaky/gpt-4o-mini" in zh

    down.reset()

    def recovered() -> bool:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        return not unresolved(gw)

    wait_until(recovered, 30.0, "the incident resolved after recovery")
    dom = browse(page, ARTIFACTS / "status-recovered.png")
    assert "All Systems Operational" in dom
    assert "Current incidents" not in dom
    assert "Past incidents" in dom and "Elevated errors on flaky/gpt-4o-mini" in dom
    assert "Resolved" in dom
