"""--serve's page in headless Chromium with a model of your choice: press play, listen, print the
page's own counters (time to first sound, received, played, underruns) and save a screenshot.

    python bench/page.py models/voice_srnn_sz256.h5 page.png          # 12 s of the ready model
    python bench/page.py MODEL.h5 OUT.png --seconds 30 --temperature 0.95

docs/live/page.png is `python bench/page.py models/voice_srnn_sz256.h5 page.png`, cropped to the
page's content. Needs Playwright and Chromium, as tests/test_page.py (which it borrows its browser
settings from).
"""
import argparse
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]  # srnn, and the browser test's settings

from test_page import CHROMIUM_FLAGS, chromium  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint")
    p.add_argument("out", help="the screenshot (PNG)")
    p.add_argument("--seconds", type=float, default=12.0, help="how long to listen before the screenshot")
    p.add_argument("--temperature", type=float, default=1.0)
    args = p.parse_args()
    path, why = chromium()
    if path is None:
        sys.exit(f"bench/page.py: {why}")
    import srnn
    from playwright.sync_api import sync_playwright
    from srnn import server

    model = srnn.load(args.model)
    req = model.request(None, temperature=args.temperature)
    sampler = model.sampler()
    speed = server.measure(sampler, req)  # as --serve: its listener limit from the measured speed
    station = server.Station(model, req, sampler, server.listener_limit(speed), speed, print)
    httpd = server.listen(station, server.LOCAL, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
        page.wait_for_selector("#play:not([disabled])")
        page.click("#play")
        page.wait_for_timeout(int(args.seconds * 1000))
        print(page.evaluate("window.srnnStats"))
        page.screenshot(path=args.out)
        browser.close()
    httpd.shutdown()


if __name__ == "__main__":
    main()
