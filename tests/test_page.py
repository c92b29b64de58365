"""--serve's page in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright
loads the page, presses play and listens for 20 s; the page's own counters say how it went. Where
Chromium or Playwright is missing (`.ci/run` installs both) the test says so and is skipped."""
import os
import shutil
import threading

import pytest

import srnn

LISTEN_S = 20
CHROMIUM_FLAGS = [  # no network beyond the page's server, nothing of a desktop's
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
]


def chromium():
    """Chromium's path, or the reason the browser test cannot run here."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "Playwright is not installed (pip install playwright; .ci/run installs it)"
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        return None, "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
    return path, None


@pytest.fixture
def served(small_checkpoints, xla_generation):
    """The plain small model served on a free port, one listener at a time: its URL and Station
    (its generation compiled by XLA, as a user's is: playing in real time is the subject)."""
    from srnn import server

    model = srnn.load(small_checkpoints["plain"])
    req = model.request(None, temperature=0.9)  # the page starts endless at T=0.9
    sampler = model.sampler()
    st = server.Station(model, req, sampler, max_listeners=1, speed=server.measure(sampler, req), log=lambda x: None)
    httpd = server.listen(st, server.LOCAL, 0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", st
    httpd.shutdown()
    httpd.server_close()


def wait_until(page, expression, timeout=30):
    """Poll an expression in the page (Playwright's wait_for_function evaluates strings, which the
    page's Content-Security-Policy forbids, as it should)."""
    import time

    deadline = time.time() + timeout
    while not page.evaluate(expression):
        assert time.time() < deadline, f"the page never had {expression}: {page.evaluate('window.srnnStats')}"
        page.wait_for_timeout(100)


@pytest.mark.slow  # a browser, and 20 s of listening
def test_the_page_plays_a_stream_without_gaps(served, tmp_path):
    path, reason = chromium()
    if path is None:
        print(f"the page's browser test did not run: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    url, station = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            page.goto(url)
            page.wait_for_selector("#play:not([disabled])")
            assert page.input_value("#temperature") == "0.9" and page.is_checked("#endless")
            page.click("#play")
            wait_until(page, "window.srnnStats.played > 0")
            # one place only: a second listener is refused, and the page says why
            other = browser.new_page()
            other.goto(url)
            other.wait_for_selector("#play:not([disabled])")
            other.click("#play")
            wait_until(other, "window.srnnStats.state === 'refused'")
            assert "taken" in other.text_content("#message")
            other.close()
            page.wait_for_timeout(LISTEN_S * 1000)
            stats = page.evaluate("window.srnnStats")
            page.screenshot(path=str(tmp_path / "page.png"))
            if os.environ.get("SRNN_PAGE_SCREENSHOT"):  # to look at the page afterwards
                shutil.copy(tmp_path / "page.png", os.environ["SRNN_PAGE_SCREENSHOT"])
            page.click("#stop")
        finally:
            browser.close()
    rate = station.req.rate
    print(f"the page: first sound after {stats['firstSoundMs']} ms, {stats['received'] / rate:.1f} s received, "
          f"{stats['played'] / rate:.1f} s played, {stats['underruns']} underruns, generation {stats['speed']}x")
    assert stats["state"] == "playing" and stats["error"] is None, stats
    assert stats["underruns"] == 0, stats
    assert stats["played"] >= (LISTEN_S - 1) * rate and stats["received"] >= stats["played"], stats
    assert 0 < stats["firstSoundMs"] < 5000 and stats["speed"] > 1, stats
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"
