"""The report in a real headless Chromium: every figure loads, no console errors, model text shown as text.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (the dev extra); skipped
without them. ``.ci/run`` installs both.
"""

import shutil
from pathlib import Path

import pytest
from conftest import copy_run_with_policy_text

from rlhflab.report import write_report
from rlhflab.run.rundir import RunDir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_renders_in_chromium(micro_run, tmp_path):
    text = ' <script>document.title = "pwned"</script><img src=x onerror="alert(1)">'
    run = copy_run_with_policy_text(micro_run, tmp_path / "run", text)
    page_path = write_report([RunDir(run)], run / "report.html")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
        first_sample = page.inner_text("#samples ~ h3 + table tr:nth-child(2) td:nth-child(4)")
        title = page.title()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()

    assert len(images) >= 6, images
    assert all(complete and width > 0 for _, complete, width in images), images
    assert problems == []
    assert "<script>" in first_sample and "onerror" in first_sample  # shown as text, never run
    assert title.startswith("rlhflab report") and (tmp_path / "report.png").stat().st_size > 10_000
