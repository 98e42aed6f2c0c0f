"""The leaderboard served by `steper-bench leaderboard` on loopback, loaded in headless Chromium.

st.dataframe draws its cells on a canvas, so the page is checked through its other elements
(title, tabs, captions, download buttons); cell values are checked with AppTest elsewhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_leaderboard import write_demo_db  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"leaderboard server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"leaderboard server not healthy after {timeout_s}s")


@pytest.fixture
def server(tmp_path):
    db = tmp_path / "results.duckdb"
    write_demo_db(db)
    port = _free_port()
    exe = Path(sys.executable).with_name("steper-bench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "steper_bench"]
    proc = subprocess.Popen(
        cmd + ["leaderboard", "--db", str(db), "--port", str(port), "--headless", "--address", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"},
        start_new_session=True,  # its own process group: the CLI and the streamlit child stop together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_page_renders_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "leaderboard.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server, timeout=30_000)
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=30_000)
            page.get_by_text("Download CSV").wait_for(timeout=15_000)
            body = page.inner_text("body")
            assert "StepER benchmark leaderboard" in body
            assert "Main table" in body
            for tab in ("Leaderboard", "Charts", "Sample explorer"):
                assert page.get_by_role("tab", name=tab).count() == 1
            assert "Download Markdown (paper layout)" in body
            assert "finished runs shown" in body
            assert "Traceback" not in body and "Error" not in body
            page.screenshot(path=str(shot), full_page=True)
            # Charts: Altair specs rendered by vega-embed.
            page.get_by_role("tab", name="Charts").click()
            page.locator('[data-testid="stVegaLiteChart"]').nth(3).wait_for(timeout=15_000)
            charts_body = page.inner_text("body")
            for title in ("Accuracy vs student size", "Accuracy vs latency", "Reasoning ability scores"):
                assert title in charts_body
            page.screenshot(path=str(tmp_path / "charts.png"), full_page=True)
            # The explorer: open its tab and wait for a stored reasoning step.
            page.get_by_role("tab", name="Sample explorer").click()
            page.get_by_text("Step 1").first.wait_for(timeout=15_000)
            assert "query 1 for hotpotqa-q0" in page.inner_text("body")
            page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshots: {shot} {tmp_path / 'charts.png'} {tmp_path / 'explorer.png'}")
