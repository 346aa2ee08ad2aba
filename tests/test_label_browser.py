"""The labelling page in a real headless Chromium: five pairs labelled by keyboard and by click,
one undone, and the database holds exactly the four expected answers; model text shown as text.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (the dev extra); skipped
without them. ``.ci/run`` installs both.
"""

import shutil

import pytest
from labelserver import Server

from rlhflab.feedback.label.store import LabelStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
HOSTILE = ' <script>document.title = "pwned"</script><img src=x onerror="alert(1)">'


def open_page(p, problems: list, height: int):
    """Chromium and a page whose console errors and warnings, page errors and dialogs go into ``problems``."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 1100, "height": height})
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    return browser, page


def test_label_five_pairs_by_keyboard_and_click_then_undo_one(tmp_path):
    run = tmp_path / "run"
    store = LabelStore(run)
    store.add_queries(
        [{"prompt": f"prompt {i}", "a": HOSTILE if i == 0 else f" a{i}", "b": f" b{i}"} for i in range(8)]
    )
    token = store.add_labeller("ann")
    guidelines = tmp_path / "guidelines.md"
    guidelines.write_text("Prefer the <b>kinder</b> continuation.")
    server = Server(run, guidelines=guidelines)
    problems = []
    try:
        with sync_api.sync_playwright() as p:
            browser, page = open_page(p, problems, height=800)

            # without a token: the login form; a wrong token is refused with a message
            page.goto(server.url)
            page.wait_for_selector("#login:not([hidden])")
            page.fill("#token", "wrong")
            page.click("#login button")
            page.wait_for_selector("body[data-state=login]")
            assert "valid access token" in page.inner_text("#status")
            assert problems and all("401" in m for m in problems)  # the browser logs the refused request
            problems.clear()

            page.goto(server.url + "#token=" + token)
            page.wait_for_selector("body[data-state=ready]")
            assert "#token" not in page.url  # the token leaves the address bar at once
            assert page.is_hidden("#login") and page.is_visible("#btn-a")
            assert page.inner_text("#text-a") == HOSTILE  # shown as text, not run
            assert page.title() == "rlhflab · labelling"
            assert page.inner_text("#guidelines") == "Prefer the <b>kinder</b> continuation."
            assert page.inner_text("#labeller") == "labeller: ann"

            def act(action, expect_query):
                before = page.get_attribute("body", "data-query")
                action()
                page.wait_for_function(
                    "([q]) => document.body.dataset.state === 'ready' && document.body.dataset.query === q",
                    arg=[str(expect_query)],
                )
                assert before != page.get_attribute("body", "data-query")

            act(lambda: page.keyboard.press("1"), 2)  # query 1: A
            act(lambda: page.click("#btn-b"), 3)  # query 2: B
            act(lambda: page.keyboard.press("3"), 4)  # query 3: tie
            act(lambda: page.keyboard.press("2"), 5)  # query 4: B
            act(lambda: page.click("#btn-tie"), 6)  # query 5: tie
            act(lambda: page.keyboard.press("u"), 5)  # undo query 5: shown again
            assert page.inner_text("#text-b") == " b4"
            assert "4 answered by you" in page.inner_text("#progress")
            page.screenshot(path=str(tmp_path / "label.png"))
            browser.close()
    finally:
        server.stop()

    assert problems == []
    assert [(a["query_id"], a["choice"], a["labeller"]) for a in store.answers()] == [
        (1, "a", "ann"),
        (2, "b", "ann"),
        (3, "tie", "ann"),
        (4, "b", "ann"),
    ]


def test_label_clip_pairs_by_arrow_keys_with_the_videos_playing(tmp_path):
    """Clip queries (MP4s fetched with the token, played from blob URLs under the page's CSP) answered with the
    arrow keys; a text query after them shows text again."""
    import numpy as np

    from rlhflab.control.clips import mp4_bytes
    from rlhflab.feedback.label.clips import ClipQueue

    run = tmp_path / "run"
    store = LabelStore(run)

    def video(shade: int) -> bytes:
        frames = np.zeros((12, 32, 48, 3), np.uint8)
        frames[:, :, :, 0] = shade
        frames[np.arange(12), :, np.arange(12) * 4] = 255  # a bar moving right
        return mp4_bytes(frames)

    queue = ClipQueue(store, "Reacher-v5")
    ids = queue.put([{"caption": f"clips {i}", "video_a": video(40 * i), "video_b": video(40 * i + 20),
                      "segments": b"s%d" % i} for i in range(3)])  # fmt: skip
    store.add_queries([{"prompt": "after the clips", "a": " text a", "b": " text b"}])
    token = store.add_labeller("ann")
    server = Server(run)
    problems = []
    try:
        with sync_api.sync_playwright() as p:
            browser, page = open_page(p, problems, height=900)
            page.goto(server.url + "#token=" + token)
            page.wait_for_selector("body[data-state=ready]")
            assert page.inner_text("#question") == "Which clip is better?"
            assert page.inner_text("#prompt") == "clips 0" and page.is_hidden("#text-a")

            def decoded(side: str) -> dict:
                page.wait_for_function(f"document.getElementById('clip-{side}').readyState >= 2", timeout=15_000)
                return page.evaluate(
                    f"(() => {{ const v = document.getElementById('clip-{side}'); return {{src: v.src, "
                    f"w: v.videoWidth, h: v.videoHeight, error: v.error && v.error.code, hidden: v.hidden}}; }})()"
                )

            a, b = decoded("a"), decoded("b")
            assert a["src"].startswith("blob:") and a["src"] != b["src"] and not a["hidden"]
            assert (a["w"], a["h"], a["error"]) == (48, 32, None)  # the MP4 decoded in the browser
            page.screenshot(path=str(tmp_path / "clips.png"))
            for key, next_query in (("ArrowLeft", ids[1]), ("ArrowRight", ids[2]), ("=", 4)):
                page.keyboard.press(key)
                page.wait_for_function(
                    "([q]) => document.body.dataset.state === 'ready' && document.body.dataset.query === q",
                    arg=[str(next_query)],
                )
            assert page.inner_text("#question") == "Which continuation is better?"
            assert page.is_hidden("#clip-a") and page.inner_text("#text-a") == " text a"
            browser.close()
    finally:
        server.stop()
    assert problems == []
    assert [(a.query_id, a.choice) for a in queue.answers()] == list(zip(ids, ["a", "b", "tie"]))
