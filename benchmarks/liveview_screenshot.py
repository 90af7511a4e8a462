"""``python -m benchmarks.liveview_screenshot --out docs/images/live-view.png``: the README's picture of the live view.

It makes the demo's footage (:mod:`benchmarks.demo`: camera ``door`` plays the demo clip, a real
segment then a manipulated one; camera ``lobby`` plays real footage of the same face, mirrored),
runs ``runtime.detect`` on both as live cameras with the bundled model (or ``--engine``) at its own
threshold (or ``--threshold``), the live view on, event snapshots and clips on, opens the page in
headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium), and saves the
page as a PNG once most of the footage has played (the box still running: the timelines hold it all). What the picture shows is what the model scored: nothing is
staged but the footage (and the threshold, when given).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks import report
from benchmarks.liveview import free_port
from runtime.errors import Parser, UserError, missing_dependency, run_cli

PROG = "benchmarks.liveview_screenshot"


def _driver(size: tuple[int, int]):  # noqa: ANN202 - selenium's WebDriver
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise missing_dependency("selenium", "dev") from None
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        raise UserError("Chromium and its driver are needed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.demo import BUNDLED, make_clip, make_videos

    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--out", required=True, metavar="PNG", help="where the picture goes")
    p.add_argument("--engine", default=str(BUNDLED), metavar="PATH", help="the model (default: the bundled one)")
    p.add_argument("--size", default="1400x860", metavar="WxH", help="the browser window (default 1400x860)")
    p.add_argument("--threshold", type=float, metavar="P", help="the threshold (default: the model's)")
    p.add_argument("--seconds", type=float, default=20.0, metavar="SEC", help="footage per camera (default 20)")
    a = p.parse_args(argv)
    report.check_writable(a.out, "--out", [("--engine", a.engine)])
    w, h = report.parse_size(a.size)
    driver = _driver((w, h))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="jrc-shot-") as tmp:
        t = Path(tmp)
        frames = int(a.seconds * 25)
        make_clip(t / "door.mp4", frames_per_segment=frames // 2, size=(1280, 720))
        lobby = [v for v in make_videos(t / "videos", frames=frames) if v.parent.name == "real"][1]
        threshold = [] if a.threshold is None else ["--threshold", str(a.threshold)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.detect", "--engine", a.engine, "--source", f"door={t / 'door.mp4'}",
             "--source", f"lobby={lobby}", "--live", "yes", "--quiet", "--web", str(port),
             "--event-media", str(t / "events"), "--event-clip", "1", *threshold],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(base + "/api/cameras", timeout=5).read()
                    break
                except (OSError, urllib.error.URLError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise UserError(f"runtime.detect did not serve the view: {proc.stderr.read()[-500:]}") from None
                    time.sleep(0.3)
            driver.get(base + "/")
            while time.monotonic() < started + a.seconds * 0.85 and proc.poll() is None:
                time.sleep(0.5)
            if proc.poll() is not None:
                raise UserError(f"runtime.detect ended early: {proc.stderr.read()[-500:]}")
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(a.out)
            events = driver.execute_script("return document.querySelectorAll('.event').length")
        finally:
            driver.quit()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    print(f"{a.out}: the live view with {events} event(s) listed")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_cli(main, PROG)
