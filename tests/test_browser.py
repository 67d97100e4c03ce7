"""The site in a real browser (Playwright driving Debian's Chromium) on real music."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.encoding import write
from mirsearch.transforms import TRANSFORMS
from web import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# Where Chromium is found besides Playwright's own download: Debian, Ubuntu, Fedora, snap and
# Google Chrome's names on PATH, then their usual install folders.
CHROMIUM_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)
CHROMIUM_PATHS = (
    "/usr/lib/chromium/chromium",
    "/usr/lib64/chromium-browser/chromium-browser",
    "/snap/bin/chromium",
    "/opt/google/chrome/chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
# a 30-s excerpt of the last track, named as some catalog files are: long, with no place to break
UNTITLED = "frozen_bubble__introzik_the_first_thirty_seconds_without_any_title_tag"
# its genre tag, a real one's length: as a chip, an option and a hit's label it must fit a phone
LONG_GENRE = "Progressive Psychedelic Space Rock Experimental Krautrock Fusion"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TRACKS = [
    "wesnoth__knolls.mp3",
    "hedgewars__brick.ogg",
    "supertux__airship_2.mp3",
    "xmoto__foxrun.ogg",
    "lincity__02_-_robert_van_herk_-_city_blues.ogg",
    "frozen__introzik.mp3",
]


@pytest.fixture(scope="module")
def server(shared_audio, tmp_path_factory):
    """A real WSGI server on 127.0.0.1 over six real tracks; yields (base url, engine)."""
    playwright = pytest.importorskip("playwright.sync_api")
    from werkzeug.serving import make_server

    with playwright.sync_playwright() as p:
        executable = chromium(p)
    if executable is None:
        pytest.skip(
            "no Chromium found: neither Playwright's own (playwright install chromium) nor "
            f"{', '.join(CHROMIUM_NAMES)} on PATH (Debian: apt-get install chromium)"
        )

    available = [shared_audio / name for name in TRACKS if (shared_audio / name).exists()]
    untitled = tmp_path_factory.mktemp("browser-music") / f"{UNTITLED}.wav"  # a name with no breaks
    excerpt = load(available[-1]).samples[: 30 * 16_000]
    available.append(write(untitled, excerpt, 16_000, tags={"genre": LONG_GENRE}))
    settings = Settings.from_env({}, home=tmp_path_factory.mktemp("browser-home"))
    engine = Engine(settings)
    engine.index_paths(available)
    app = create_app({"SETTINGS": settings})
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(executable),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield f"http://127.0.0.1:{http.server_port}", engine, browser, available
        browser.close()
    http.shutdown()


def chromium(playwright) -> Path | None:
    """A Chromium to drive: Playwright's own if it was downloaded, else one installed on the
    system (PATH, then the usual folders)."""
    try:
        own = Path(playwright.chromium.executable_path)
    except Exception:  # Playwright raises when it has no browser of its own
        own = None
    if own is not None and own.is_file():
        return own
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return Path(found)
    return next((Path(p) for p in CHROMIUM_PATHS if Path(p).is_file()), None)


def expect(locator):
    """Playwright's assertions, imported where used: the module imports without Playwright
    (the fixture skips its tests)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def until(check, timeout_s: float = 30.0) -> None:
    """Wait for `check()` to hold, asked from here: the site's Content-Security-Policy forbids
    the evaluation of text that page.wait_for_function needs."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_upload_finds_the_source_and_plays_from_the_offset(server, tmp_path):
    base, engine, browser, files = server
    source = files[0]
    clip = write(tmp_path / "clip.wav", load(source).samples[40 * 16_000 : 50 * 16_000], 16_000)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#results li.hit", timeout=60_000)
    first = page.locator("#results li.hit").first
    href = first.locator("a").get_attribute("href")
    track_id = int(href.rsplit("/", 1)[1])
    assert engine.track(track_id).path == str(source.resolve())
    audio = first.locator("audio")
    offset = float(audio.get_attribute("data-offset"))
    assert offset == pytest.approx(40.0, abs=2.0)
    until(lambda: page.evaluate("document.querySelector('#results audio').readyState") >= 1)
    current = page.evaluate("document.querySelector('#results audio').currentTime")
    assert current == pytest.approx(offset, abs=0.5)
    screenshot(page, "results")


def test_a_genre_chip_narrows_the_list(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[1]).samples[: 10 * 16_000], 16_000)
    genre, count = min(engine.catalog.genres(), key=lambda gc: gc[1])
    page = browser.new_page()
    asked = []
    page.on("request", lambda request: asked.append(request.url.rsplit("/", 1)[1]))
    page.goto(base + "/")
    page.fill("#k", "10")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#results li.hit", timeout=60_000)
    before = page.locator("#results li.hit").count()
    page.click(f".chip[data-genre='{genre}']")
    expect(page.locator("#status")).to_contain_text(f"in {genre}", timeout=60_000)
    after = page.locator("#results li.hit").count()
    assert after == min(count, 10) and after < before
    # the clip is sent once for its results, duplicates and genres; a chip asks the search alone
    assert [a for a in asked if a in ("examine", "search", "match", "classify")] == [
        "examine",
        "search",
    ]
    screenshot(page, "genre-chip")


def test_playing_a_result_pauses_the_one_playing_before(server, tmp_path):
    base, _, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    page = browser.new_page()
    page.goto(base + "/")
    page.fill("#k", "2")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#results li.hit >> nth=1", timeout=60_000)
    players = page.locator("#results audio")
    players.nth(0).evaluate("a => a.play()")
    until(lambda: not players.nth(0).evaluate("a => a.paused"))
    players.nth(1).evaluate("a => a.play()")
    until(lambda: not players.nth(1).evaluate("a => a.paused"))
    assert players.nth(0).evaluate("a => a.paused")  # both had played at once


def test_only_the_first_results_ask_for_their_audio_before_they_are_played(server, tmp_path):
    """A long list of results had sent a request for audio a result with every answer."""
    base, _, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    page = browser.new_page()
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/audio" in request.url else 0)
    page.goto(base + "/")
    page.fill("#k", str(len(files)))
    page.set_input_files("#file", str(clip))
    page.wait_for_selector(f"#results li.hit >> nth={len(files) - 1}", timeout=60_000)
    players = page.locator("#results audio")
    until(lambda: all(players.nth(i).evaluate("a => a.readyState") >= 1 for i in range(5)))
    time.sleep(0.5)
    assert len({url.split("#")[0] for url in asked}) == 5, asked
    last = players.nth(len(files) - 1)
    assert last.evaluate("a => a.readyState") == 0
    last.evaluate("a => a.play()")
    until(lambda: last.evaluate("a => a.readyState") >= 1)
    offset = float(last.get_attribute("data-offset"))
    assert last.evaluate("a => a.currentTime") == pytest.approx(offset, abs=0.5)


def test_each_result_names_its_artist_as_the_api_gives_it(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    found = [r.to_dict() for r in engine.search(clip, k=2)]
    found[0]["artist"], found[1]["artist"] = "Mattias Westlund", None
    examined = engine.examine(clip, k=2).to_dict() | {"query": "clip.wav", "results": found}
    page = browser.new_page()
    page.route("**/api/examine", lambda route: route.fulfill(json=examined))
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#results li.hit >> nth=1", timeout=60_000)
    hits = page.locator("#results li.hit")
    # two tracks of one title by two artists had read alike: the artist was left out
    assert hits.nth(0).locator(".artist").inner_text() == "by Mattias Westlund"
    assert hits.nth(1).locator(".artist").count() == 0


def test_an_answer_that_comes_late_does_not_replace_a_newer_one(server, tmp_path):
    base, engine, browser, files = server
    first = write(tmp_path / "first.wav", load(files[3]).samples[: 10 * 16_000], 16_000)
    second = write(tmp_path / "second.wav", load(files[4]).samples[: 10 * 16_000], 16_000)
    page = browser.new_page()
    held = []  # the searches' requests, answered when the test says
    page.route("**/api/examine", lambda route: held.append(route))
    page.goto(base + "/")

    def search(clip, n_held):
        page.set_input_files("#file", str(clip))
        while len(held) < n_held:
            page.wait_for_timeout(50)

    search(first, 1)
    search(second, 2)
    held[1].continue_()
    expect(page.locator("#status")).to_contain_text("second.wav", timeout=60_000)
    shown = page.locator("#results li.hit a").first.get_attribute("href")
    assert engine.track(int(shown.rsplit("/", 1)[1])).path == str(files[4].resolve())
    with page.expect_response("**/api/examine"):
        held[0].continue_()
    page.wait_for_timeout(500)  # time for the page to show it, were it to
    assert page.locator("#results li.hit a").first.get_attribute("href") == shown
    assert "second.wav" in page.inner_text("#status")


def test_a_reencoded_copy_shows_the_duplicate_banner(server, tmp_path):
    base, _, browser, files = server
    samples = load(files[2]).samples[20 * 16_000 : 35 * 16_000]
    mp3, _ = TRANSFORMS["mp3_64k"](samples, 16_000)
    copy = write(tmp_path / "copy.mp3", mp3, 16_000, bit_rate=64_000)
    page = browser.new_page()
    page.goto(base + "/")
    page.set_input_files("#file", str(copy))
    page.wait_for_selector("#banner:not([hidden])", timeout=60_000)
    assert "Near-duplicate" in page.inner_text("#banner")
    # told to a screen reader as it appears, as an error is: it had been drawn in red only
    assert page.get_by_role("alert").filter(has_text="Near-duplicate").count() == 1
    screenshot(page, "duplicate-banner")


def test_the_catalog_pages_and_filters(server):
    base, engine, browser, files = server
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(base + "/catalog?per_page=4")
    assert page.locator("table.tracks tbody tr").count() == 4
    assert "Page 1 of 2" in page.inner_text(".pager")
    page.click("a[rel=next]")
    page.wait_for_load_state()
    assert page.locator("table.tracks tbody tr").count() == len(files) - 4
    genre, count = engine.catalog.genres()[0]
    page.goto(base + "/catalog")
    page.select_option("select[name=genre]", genre)
    page.click("form.row button")
    page.wait_for_load_state()
    assert page.locator("table.tracks tbody tr").count() == count
    screenshot(page, "catalog-phone")


def test_a_search_shows_the_clips_genres_and_duplicates_and_survives_back(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    page = browser.new_page(viewport={"width": 1100, "height": 900})

    found = [r.to_dict() for r in engine.search(clip, k=1)]
    for hit in found:  # as a hit the genre filter kept by its file's tag, not the model's genre
        hit["tag_genre"] = "Rock & Roll"

    examined = engine.examine(clip, k=1).to_dict() | {"query": "clip.wav", "results": found}

    page.route("**/api/examine", lambda route: route.fulfill(json=examined))
    page.route("**/api/search", lambda route: route.fulfill(json={"results": found}))
    page.goto(base + "/")
    chips = page.locator(".chip")
    assert page.get_attribute("#chips", "role") == "group"
    assert page.inner_text("#chips-label") == "Filter by genre:"
    assert chips.count() == page.locator(".chip[aria-pressed=false]").count() > 0
    assert page.title() == "Search by sound · mirsearch"  # it had been "mirsearch" alone
    page.fill("#k", "1")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#classification:not([hidden]) #clip-genres li", timeout=60_000)
    assert page.inner_text("#status") == "1 result for clip.wav"
    assert page.title() == "1 result for clip.wav · mirsearch"
    hit = page.locator("#results li.hit")
    title = hit.locator("a").inner_text()
    assert hit.locator("audio").get_attribute("aria-label") == (
        f"Play {title} from {float(hit.locator('audio').get_attribute('data-offset')):.1f} s"
    )
    assert hit.locator("span.muted").first.inner_text() == (
        f"{found[0]['genre']} · tagged Rock & Roll"
    )
    banner = page.locator("#banner")
    assert banner.is_visible() and "at the same speed as the track" in banner.inner_text()
    assert banner.locator("a").first.inner_text() == title
    assert banner.locator("a").first.get_attribute("href") == hit.locator("a").get_attribute("href")
    assert page.locator("#clip-genres li").count() == 5
    assert page.locator("#clip-tags .chip").count() == 6
    chips.first.click()
    expect(page.locator("#status")).to_contain_text(" in ")
    assert chips.first.get_attribute("aria-pressed") == "true"
    hit.locator("a").click()
    page.wait_for_selector("h1")
    assert page.get_attribute("main audio", "aria-label") == f"Play {page.inner_text('h1')}"
    page.go_back()
    page.wait_for_selector("#results li.hit", timeout=10_000)
    assert page.inner_text("#status").startswith("1 result for clip.wav in ")
    assert "your last search" in page.inner_text("#status")
    assert banner.is_visible() and page.locator("#clip-genres li").count() == 5
    assert chips.first.get_attribute("aria-pressed") == "true"
    screenshot(page, "search-back")


def test_a_failed_upload_clears_the_last_answer_and_names_the_file(server, tmp_path):
    base, _, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    silent = write(tmp_path / "silent.wav", np.zeros(5 * 16_000, dtype=np.float32), 16_000)
    page = browser.new_page()
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#banner:not([hidden])", timeout=60_000)
    assert page.locator("#results li.hit").count() > 0 and page.is_visible("#classification")
    held = []  # the upload's request, answered when the test says
    page.route("**/api/examine", lambda route: held.append(route))
    page.set_input_files("#file", str(silent))
    while not held:
        page.wait_for_timeout(50)
    assert page.locator("#results li").count() == 0 and page.is_hidden("#banner")
    assert page.inner_text("#status") == "Searching for silent.wav…"
    held[0].continue_()
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert page.get_attribute("#error", "role") == "alert"
    assert page.inner_text("#error").startswith("silent.wav: the audio is silent")
    assert page.is_enabled("#submit")  # on again once the answer, here an error, is in
    assert page.locator("#results li").count() == 0
    assert page.is_hidden("#banner") and page.is_hidden("#classification")
    screenshot(page, "failed-upload")


def test_a_server_out_of_reach_is_told_as_such_not_as_the_clip_s_fault(server, tmp_path):
    base, _, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    page = browser.new_page()
    page.goto(base + "/")
    page.route("**/api/examine", lambda route: route.abort("connectionreset"))
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    told = page.inner_text("#error")  # it had been "clip.wav: Failed to fetch"
    assert told.startswith("the server could not be reached") and "clip.wav" not in told
    page.unroute("**/api/examine")
    page.click("#submit")  # the same clip, once the server answers again
    page.wait_for_selector("#results li.hit", timeout=60_000)
    assert page.is_hidden("#error")


def test_no_page_scrolls_sideways_on_a_narrow_phone(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[-1]).samples[: 10 * 16_000], 16_000)
    page = browser.new_page(viewport={"width": 375, "height": 812})
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector(f"#results li.hit a:has-text('{UNTITLED}.wav')", timeout=60_000)
    width = "document.documentElement.scrollWidth"
    assert page.evaluate(width) <= 375  # the long genre's chip had made the page 594 px wide
    screenshot(page, "search-phone")
    page.goto(base + "/catalog")
    assert page.evaluate(width) <= 375  # its <option> had made the genre menu 619 px wide
    page.goto(base + f"/tracks/{engine.catalog.by_path(files[0].resolve()).id}")
    assert page.evaluate(width) <= 375
    lines = page.eval_on_selector_all(
        ".tags .chip", "chips => chips.map(c => c.getClientRects().length)"
    )
    assert lines and set(lines) == {1}  # no chip broken across two lines
    screenshot(page, "track-phone")


def test_a_track_s_tags_keep_to_one_line_on_a_360_px_phone(server):
    base, engine, browser, files = server
    page = browser.new_page(viewport={"width": 360, "height": 800})
    for path in files:
        page.goto(base + f"/tracks/{engine.catalog.by_path(path.resolve()).id}")
        heights = page.eval_on_selector_all(
            ".tags .chip", "chips => chips.map(c => c.getBoundingClientRect().height)"
        )
        # the values' column had lost 40 px to a <dd>'s own indent: 'instrumental 0.19' took two
        assert heights and max(heights) < 1.5 * min(heights), path.name


def test_a_right_to_left_override_in_a_title_reverses_the_title_only(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    examined = engine.examine(clip, k=1).to_dict() | {"query": "clip.wav"}
    for hit in examined["results"] + examined["matches"]:
        hit["title"] = "\u202eevil.mp3 gnos"  # U+202E: shown as "song 3pm.live"
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.route("**/api/examine", lambda route: route.fulfill(json=examined))
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#banner:not([hidden])", timeout=60_000)
    hit = page.locator("#results li.hit")
    link, label, score = (
        hit.locator("a").bounding_box(),
        hit.locator("span.muted").first.bounding_box(),
        hit.locator("span.muted").last.bounding_box(),
    )
    assert link["x"] < label["x"] < score["x"]  # the override had put the genre left of the link
    # the text after the title reads left to right: the override had shown "s 0.0 ta" and the
    # banner's "(score 1.00)" as "(00.1 erocs"
    for element in (hit.locator("span.muted").last, page.locator("#banner li").first):
        assert reads_left_to_right(element, element.inner_text()[-4:])


def reads_left_to_right(element, tail: str) -> bool:
    """Whether the last characters of `element`'s text are drawn in order, left to right."""
    xs = element.evaluate(
        """(el, n) => {
          const node = [...el.childNodes].filter((c) => c.nodeType === 3).pop();
          const range = document.createRange();
          return [...Array(n).keys()].map((i) => {
            range.setStart(node, node.length - n + i);
            range.setEnd(node, node.length - n + i + 1);
            return range.getBoundingClientRect().x;
          });
        }""",
        len(tail),
    )
    return xs == sorted(xs)


def test_the_file_the_browser_keeps_in_the_picker_after_back_is_searched_again(server, tmp_path):
    base, _, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    page = browser.new_page()
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#results li.hit", timeout=60_000)
    page.locator("#results li.hit a").first.click()
    page.wait_for_selector("h1")
    page.go_back()
    expect(page.locator("#status")).to_contain_text("(your last search: Search runs it again)")
    assert page.evaluate("document.getElementById('file').files[0].name") == "clip.wav"
    page.click("#submit")  # it had said "Choose, drop or record a clip first." beside the file
    expect(page.locator("#status")).to_have_text(
        re.compile(r"\d+ results for clip\.wav"), timeout=60_000
    )
    genre = page.locator(".chip[data-genre]").first
    genre.click()  # and a chip had thrown the answer away, asking for a clip
    expect(page.locator("#status")).to_contain_text(
        f"for clip.wav in {genre.get_attribute('data-genre')}", timeout=60_000
    )


def test_a_chip_pressed_after_back_clears_the_restored_answer_of_another_genre(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    (first, _), (second, _) = engine.catalog.genres()[:2]
    found = [r.to_dict() for r in engine.search(clip, k=2)]
    answer = {"name": "clip.wav", "genre": first, "found": found, "dupes": [], "classified": None}
    page = browser.new_page()
    page.goto(base + "/")
    page.evaluate("a => sessionStorage.setItem('mirsearch.last-search', a)", json.dumps(answer))
    page.reload()  # as after Back: the answer restored, its clip gone
    expect(page.locator("#status")).to_contain_text(f"in {first} (your last search")
    assert page.locator("#results li.hit").count() == 2
    page.click(f".chip[data-genre='{second}']")
    assert page.get_attribute(f".chip[data-genre='{second}']", "aria-pressed") == "true"
    # the first genre's results had stayed beside the second's chip, with no search sent
    assert page.locator("#results li.hit").count() == 0
    assert page.inner_text("#status") == f"Choose, drop or record a clip to search in {second}."


def test_search_is_off_while_a_clip_is_searched_so_it_is_sent_once(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[1]).samples[: 10 * 16_000], 16_000)
    genre = engine.catalog.genres()[0][0]
    page = browser.new_page()
    asked, held = [], []  # the uploads sent; the first, answered when the test says
    page.on("request", lambda request: asked.append(request.url.rsplit("/", 1)[1]))
    page.route("**/api/examine", lambda route: held.append(route))
    page.clock.install()  # the page's timers run when the test says
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    while not held:
        page.wait_for_timeout(50)
    assert page.is_disabled("#submit") and page.get_attribute("#results", "aria-busy") == "true"
    page.press("#k", "Enter")  # the form's submit: a second examine had been sent
    page.click(f".chip[data-genre='{genre}']")  # asked of the answer once it is in
    page.clock.fast_forward(5_000)
    expect(page.locator("#status")).to_contain_text("A long file can take a minute")
    assert [a for a in asked if a in ("examine", "search")] == ["examine"]
    held[0].continue_()
    expect(page.locator("#status")).to_contain_text(f"in {genre}", timeout=60_000)
    assert [a for a in asked if a in ("examine", "search")] == ["examine", "search"]
    assert page.is_enabled("#submit") and page.get_attribute("#results", "aria-busy") == "false"


def test_a_title_of_zero_width_spaces_only_is_shown_as_the_file_s_name(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    examined = engine.examine(clip, k=1).to_dict() | {"query": "clip.wav"}
    for hit in examined["results"] + examined["matches"]:
        hit["title"] = "\u200b\u200b"
    page = browser.new_page()
    page.route("**/api/examine", lambda route: route.fulfill(json=examined))
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#banner:not([hidden])", timeout=60_000)
    file = examined["results"][0]["path"].rsplit("/", 1)[1]
    for link in (page.locator("#results li.hit a"), page.locator("#banner a")):
        assert link.inner_text() == file and link.bounding_box()["width"] > 0  # had been 0 px


def test_a_k_out_of_bounds_is_told_before_sending_and_not_as_the_clip_s_fault(server, tmp_path):
    base, engine, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    examined = engine.examine(clip, k=1).to_dict() | {"query": "clip.wav"}
    page = browser.new_page()
    asked = []
    page.on("request", lambda request: asked.append(request.url.rsplit("/", 1)[1]))
    page.route("**/api/examine", lambda route: route.fulfill(json=examined))
    page.goto(base + "/")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#results li.hit", timeout=60_000)
    page.fill("#k", "0")
    other = write(tmp_path / "other.wav", load(files[1]).samples[: 10 * 16_000], 16_000)
    page.set_input_files("#file", str(other))  # a new file: it had been sent, then blamed
    expect(page.locator("#error")).to_contain_text("Results: ")
    assert "other.wav" not in page.inner_text("#error")
    assert page.locator("#results li.hit").count() == 1  # the last answer stays
    page.fill("#k", "5000")
    page.click("#submit")  # the browser's tooltip: the box had gone on saying "got 0"
    expect(page.locator("#error")).to_contain_text("1000")
    assert asked.count("examine") == 1


def test_a_k_written_as_the_number_box_allows_is_sent_as_a_whole_number(server, tmp_path):
    base, _, browser, files = server
    clip = write(tmp_path / "clip.wav", load(files[0]).samples[40 * 16_000 : 50 * 16_000], 16_000)
    page = browser.new_page()
    page.goto(base + "/")
    page.fill("#k", "3.0")  # a valid number to the box: the API had refused it, blaming the clip
    page.set_input_files("#file", str(clip))
    expect(page.locator("#status")).to_have_text("3 results for clip.wav", timeout=60_000)
    page.fill("#k", "2e0")
    page.click("#submit")
    expect(page.locator("#status")).to_have_text("2 results for clip.wav", timeout=60_000)
    assert page.is_hidden("#error")
