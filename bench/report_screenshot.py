"""The README's picture of the HTML report: run the quickstart sweep, report, screenshot.

    python bench/report_screenshot.py [--out examples/quickstart/report.png] [--height 1500]

Runs ``skysweep up examples/quickstart/task.yaml --local`` in a throwaway HOME and store,
``skysweep report`` on it, opens the page in Debian's headless Chromium (``/usr/bin/chromium``,
through Playwright) and saves the top ``--height`` pixels of the page as a PNG. Prints the
time each step took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def skysweep(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "skysweep", *args], capture_output=True, text=True, env=env
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"skysweep {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "quickstart" / "report.png")
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
        env.pop("SKYSWEEP_STORE", None)
        start = time.perf_counter()
        task = ROOT / "examples" / "quickstart" / "task.yaml"
        up = skysweep("up", str(task), "--local", "--yes", "--output", "json", env=env)
        sweep_id = json.loads(up)["sweep_id"]
        page_path = home / "report.html"
        skysweep("report", sweep_id, "--out", str(page_path), env=env)
        print(f"sweep and report: {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": args.height})
            page.goto(page_path.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5")
            page.wait_for_timeout(500)  # Plotly's transitions
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
        print(f"screenshot: {time.perf_counter() - start:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
