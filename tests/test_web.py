"""The web site and JSON API on a small real catalog: every endpoint, every bad input, no 5xx."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import pytest
import sqlalchemy as sa
from conftest import tone, write_video
from werkzeug.http import http_date, parse_date

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.demo import demo_pieces, render, write_demo_catalog
from mirsearch.encoding import write
from mirsearch.generations import path_of
from web import SECURITY_HEADERS, create_app
from web.api import LONG_UPLOADS


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(app, client, demo paths) over six indexed demo tracks, one with a hostile title."""
    music = tmp_path_factory.mktemp("music")
    paths = write_demo_catalog(music, n_tracks=6)
    write(
        music / "hostile.flac",
        render(demo_pieces(1, seed=99)[0], sample_rate=16_000),
        16_000,
        tags={"title": "<script>alert(1)</script>", "genre": "jazz"},
    )
    settings = Settings.from_env({}, home=tmp_path_factory.mktemp("home"))
    Engine(settings).index_paths([music])
    app = create_app({"SETTINGS": settings, "TESTING": True})
    return app, app.test_client(), paths


def clip_bytes(path, *, start_s=10.0, seconds=10.0, suffix=".wav", tmp) -> bytes:
    samples = load(path).samples
    out = write(
        tmp / f"clip{suffix}", samples[int(start_s * 16_000) :][: int(seconds * 16_000)], 16_000
    )
    return out.read_bytes()


def upload(client, url, data: bytes, name="clip.wav", **form):
    return client.post(
        url, data={"file": (io.BytesIO(data), name), **form}, content_type="multipart/form-data"
    )


def assert_error(response, status: int):
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_search_finds_the_source_with_the_contract_fields(site, tmp_path):
    _, client, paths = site
    response = upload(client, "/api/search", clip_bytes(paths[2], tmp=tmp_path), k="3")
    body = response.get_json()
    assert response.status_code == 200 and body["query"] == "clip.wav"
    assert len(body["results"]) == 3
    assert body["results"][0]["path"] == str(paths[2])
    contract = {"track_id", "path", "title", "artist", "genre", "score", "offset_s"}
    added = {"tag_genre", "query_offset_s", "track_offset_s"}  # fields added, none renamed
    documented = client.get("/api/openapi.json").get_json()["components"]["schemas"]["Result"]
    assert set(body["results"][0]) == set(documented["required"]) == contract | added


def test_genre_filter_narrows_results(site, tmp_path):
    _, client, paths = site
    response = upload(
        client, "/api/search", clip_bytes(paths[1], tmp=tmp_path), k="10", genre="jazz"
    )
    results = response.get_json()["results"]
    allowed = {t["track_id"] for t in client.get("/api/tracks?genre=jazz").get_json()["tracks"]}
    assert results and {r["track_id"] for r in results} <= allowed


def test_match_flags_an_mp3_copy(site, tmp_path):
    _, client, paths = site
    data = clip_bytes(paths[3], start_s=5.0, seconds=15.0, suffix=".mp3", tmp=tmp_path)
    matches = upload(client, "/api/match", data, name="copy.mp3").get_json()["matches"]
    assert matches and matches[0]["path"] == str(paths[3])
    assert set(matches[0]) == {
        "track_id",
        "path",
        "title",
        "score",
        "query_offset_s",
        "track_offset_s",
        "duration_s",
        "speed",
    }


def test_classify_gives_probabilities_and_similar_tracks(site, tmp_path):
    _, client, paths = site
    body = upload(client, "/api/classify", clip_bytes(paths[0], tmp=tmp_path)).get_json()
    assert body["genre"] in body["probabilities"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=0.01)
    assert body["similar"]
    scores = [t["score"] for t in body["tags"]]
    assert len(body["tags"]) == 10 and scores == sorted(scores, reverse=True)
    assert {"tag", "score", "kind"} == set(body["tags"][0])
    vocabulary = site[0].extensions["mirsearch"].embedder.labels
    assert list(body["probabilities"]) == list(vocabulary)  # in the model's order, as the CLI
    assert list(body["similar"][0])[:2] == ["track_id", "path"]  # gives them: keys not sorted


def test_catalog_endpoints(site):
    _, client, paths = site
    listing = client.get("/api/tracks?per_page=2&page=2").get_json()
    assert listing["total"] == 7 and len(listing["tracks"]) == 2 and listing["page"] == 2
    every_id = [t["track_id"] for t in client.get("/api/tracks").get_json()["tracks"]]
    assert [t["track_id"] for t in listing["tracks"]] == every_id[2:4]  # the 3rd and 4th by id
    track_id = listing["tracks"][0]["track_id"]
    assert client.get(f"/api/tracks/{track_id}").get_json()["track_id"] == track_id
    similar = client.get(f"/api/tracks/{track_id}/similar?k=3").get_json()
    assert len(similar["results"]) == 3
    assert track_id not in [r["track_id"] for r in similar["results"]]
    genres = client.get("/api/genres").get_json()["genres"]
    assert genres and {"genre", "count"} == set(genres[0])
    for g in genres:  # each genre's count is the tracks a filter by it lists
        listed = client.get("/api/tracks", query_string={"genre": g["genre"]}).get_json()
        assert listed["total"] == g["count"], g
    groups = [  # what indexing flagged (on synthesised music, pieces that share drums)
        {t["track_id"] for t in g["tracks"]}
        for g in client.get("/api/duplicates").get_json()["groups"]
    ]
    every = client.get("/api/tracks?per_page=50").get_json()["tracks"]
    flagged = {(t["track_id"], t["duplicate_of"]) for t in every if t["duplicate_of"]}
    assert all(any({copy, of} <= group for group in groups) for copy, of in flagged)
    assert len(groups) == len({frozenset(g) for g in groups}) <= len(flagged)
    health = client.get("/api/health").get_json()
    assert health["status"] == "ok" and health["tracks"] == 7
    found = [t["title"] for t in client.get("/api/tracks?q=demo 2").get_json()["tracks"]]
    folder = re.search(r"(?<![^\W_])2(?![^\W_])", str(paths[0].parent))  # pytest-2/: every track
    assert found == ["Demo 2"] or (folder and "Demo 2" in found)  # "2" whole, not in pytest-182/


def test_audio_is_served_by_id_with_range_requests(site):
    _, client, paths = site
    track_id = client.get("/api/tracks?q=demo 1").get_json()["tracks"][0]["track_id"]
    whole = client.get(f"/api/tracks/{track_id}/audio")
    assert whole.status_code == 200 and whole.data == paths[0].read_bytes()
    part = client.get(f"/api/tracks/{track_id}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == paths[0].read_bytes()[100:200]
    assert part.headers["Content-Range"].startswith("bytes 100-199/")
    past = client.get(f"/api/tracks/{track_id}/audio", headers={"Range": "bytes=999999999-"})
    assert_error(past, 416)
    assert past.headers["Content-Range"] == f"bytes */{paths[0].stat().st_size}"  # RFC 9110
    size = paths[0].stat().st_size
    for ignored in ("bytes=abc", "items=0-5", "bytes=0-1,5-6", f"bytes=-{size + 1}"):  # RFC 9110:
        whole = client.get(f"/api/tracks/{track_id}/audio", headers={"Range": ignored})  # all
        assert whole.status_code == 200 and whole.data == paths[0].read_bytes(), ignored
    tail = client.get(f"/api/tracks/{track_id}/audio", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.data == paths[0].read_bytes()[-100:]
    stale = client.get(f"/api/tracks/{track_id}/audio", headers={"If-Match": '"another"'})
    assert_error(stale, 412)  # a JSON error, not the whole file under a 412
    assert len(stale.data) < 1_000


def test_an_upload_is_answered_with_its_name_as_the_browser_had_it(site, tmp_path):
    """A browser sends a newline, a carriage return and a double quote in a file's name as
    %0A, %0D and %22, and a % as it is: the name had come back `new%0Aline.wav`."""
    _, client, paths = site
    data = clip_bytes(paths[0], tmp=tmp_path)
    for sent, named in (
        ("new%0Aline %22live%22%0D.wav", 'new\nline "live"\r.wav'),
        ("50%20off 100%.wav", "50%20off 100%.wav"),
    ):
        response = client.post(
            "/api/match",
            data=f'--zz\r\nContent-Disposition: form-data; name="file"; filename="{sent}"\r\n'
            "Content-Type: audio/wav\r\n\r\n".encode()
            + data
            + b"\r\n--zz--\r\n",
            content_type="multipart/form-data; boundary=zz",
        )
        assert response.status_code == 200 and response.get_json()["query"] == named


def test_audio_changed_since_an_if_unmodified_since_date_is_a_412(site):
    """Only If-Match had been a condition: an If-Unmodified-Since before the file's last change
    got the whole file."""
    _, client, paths = site
    track_id = client.get("/api/tracks?q=demo 1").get_json()["tracks"][0]["track_id"]
    url = f"/api/tracks/{track_id}/audio"
    whole = client.get(url)
    modified, etag = whole.headers["Last-Modified"], whole.headers["ETag"]
    before = http_date(parse_date(modified) - timedelta(seconds=1))
    for asked in ({}, {"Range": "bytes=0-99"}):
        stale = client.get(url, headers={"If-Unmodified-Since": before, **asked})
        assert_error(stale, 412)
        assert "changed" in stale.get_json()["error"]["message"] and len(stale.data) < 1_000
    for kept in (
        {"If-Unmodified-Since": modified},  # not changed since that second
        {"If-Unmodified-Since": "yesterday"},  # no date: no condition
        {"If-Unmodified-Since": before, "If-Match": etag},  # If-Match decides (RFC 9110)
    ):
        answered = client.get(url, headers=kept)
        assert answered.status_code == 200 and answered.data == paths[0].read_bytes(), kept


def test_a_method_not_allowed_says_which_are(site):
    _, client, _ = site
    for put in (client.put("/api/search"), client.delete("/api/tracks")):
        assert_error(put, 405)
    assert set(client.put("/api/search").headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


@pytest.mark.parametrize(
    ("data", "name", "status"),
    [
        (b"", "empty.wav", 400),
        (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "r.mp3", 415),
        (b"just some text\n" * 100, "notes.mp3", 415),
    ],
)
def test_bad_uploads_get_a_readable_4xx(site, data, name, status):
    _, client, _ = site
    assert_error(upload(client, "/api/search", data, name=name), status)


def test_an_uploaded_playlist_never_reads_the_server_s_files(site):
    """An upload named .m3u8 had been read by FFmpeg as an HLS playlist, its entries opened on
    the server: the music of any file there was answered, catalog track or not, and the error of
    one that was not audio told the file existed."""
    _, client, paths = site
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:200\n#EXTINF:10,\n{paths[0]}\n#EXT-X-ENDLIST\n"
    for route in ("/api/match", "/api/classify"):
        answered = upload(client, route, playlist.encode(), name="clip.m3u8")
        assert_error(answered, 415)


def test_truncated_and_too_short_uploads(site, tmp_path):
    _, client, paths = site
    flac = clip_bytes(paths[0], seconds=20.0, suffix=".flac", tmp=tmp_path)
    assert_error(upload(client, "/api/search", flac[: len(flac) // 3], name="cut.flac"), 422)
    short = write(tmp_path / "short.wav", tone(440.0, 1.0), 16_000).read_bytes()
    response = upload(client, "/api/search", short)
    assert_error(response, 422)
    assert "the upload" in response.get_json()["error"]["message"]


def test_wrong_field_huge_k_bad_k_unknown_genre_unknown_id_wrong_method(site, tmp_path):
    _, client, paths = site
    data = clip_bytes(paths[0], tmp=tmp_path)
    wrong = client.post(
        "/api/search",
        data={"audio": (io.BytesIO(data), "c.wav")},
        content_type="multipart/form-data",
    )
    assert_error(wrong, 400)
    assert "a field named 'file', not 'audio'" in wrong.get_json()["error"]["message"]
    cut = client.post(  # the body's closing boundary never came
        "/api/search",
        data=b'--zz\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n\r\n'
        + data[:1000],
        content_type="multipart/form-data; boundary=zz",
    )
    assert_error(cut, 400)
    assert "was the upload cut off" in cut.get_json()["error"]["message"]
    latin = client.post(  # a client naming the file in Latin-1: only a cut had been suspected
        "/api/search",
        data=b'--zz\r\nContent-Disposition: form-data; name="file"; filename="caf\xe9.wav"\r\n\r\n'
        + data
        + b"\r\n--zz--\r\n",
        content_type="multipart/form-data; boundary=zz",
    )
    assert_error(latin, 400)
    assert "the file's name not in UTF-8?" in latin.get_json()["error"]["message"]
    as_json = client.post("/api/search", json={"file": "c.wav"})
    assert "multipart/form-data" in as_json.get_json()["error"]["message"]
    assert_error(upload(client, "/api/search", data, k=str(10**9)), 422)
    assert_error(upload(client, "/api/search", data, k="ten"), 400)
    assert_error(upload(client, "/api/search", data, k="9" * 5000), 400)  # int() refuses it
    assert_error(client.get("/api/tracks?page=" + "9" * 5000), 400)
    long_text = client.get("/api/tracks?q=" + "x" * 200_000)  # SQLite: "pattern too complex"
    assert_error(long_text, 422)
    assert "at most 1,000 characters" in long_text.get_json()["error"]["message"]
    many = client.get("/api/tracks?q=" + " ".join(f"w{i}" for i in range(13)))  # each read a row
    assert_error(many, 422)
    assert "q holds 13 words: a text search takes at most 12" in many.get_json()["error"]["message"]
    twelve = " ".join(["demo"] * 20 + [f"w{i}" for i in range(11)])  # a word twice counts once
    assert client.get(f"/api/tracks?q={twelve}").get_json()["total"] == 0
    for loose in ("1_0", " 3", "٣", "--5"):  # int() takes the first three, refuses "--5"
        assert_error(client.get(f"/api/tracks?per_page={loose}"), 400)
    assert client.get("/api/tracks?per_page=-1").status_code == 422
    assert client.get("/api/tracks?per_page=500").status_code == 200
    too_many = client.get("/api/tracks?per_page=501")
    assert_error(too_many, 422)
    assert "per_page 1 to 500" in too_many.get_json()["error"]["message"]
    assert_error(upload(client, "/api/search", data, genre="polka"), 422)
    assert_error(client.get("/api/tracks/99999"), 404)
    assert_error(client.get("/api/tracks/99999/audio"), 404)
    assert_error(client.get("/api/tracks/99999/similar"), 404)
    assert client.get("/api/tracks?genre=polka").get_json()["total"] == 0
    assert_error(client.get("/api/search"), 405)
    assert_error(client.get("/api/nothing-here"), 404)


def test_a_genre_with_a_nul_is_refused_by_every_route_that_filters_by_genre(site, tmp_path):
    """SQLite ends a pattern at a NUL: genre=%00 had kept every track with a tag genre on
    search, examine and similar, which /api/tracks refused."""
    _, client, paths = site
    data = clip_bytes(paths[0], tmp=tmp_path)
    track_id = client.get("/api/tracks").get_json()["tracks"][0]["track_id"]
    for response in (
        upload(client, "/api/search", data, genre="\x00"),
        upload(client, "/api/examine", data, genre="\x00"),
        client.get(f"/api/tracks/{track_id}/similar?genre=%00"),
        client.get("/api/tracks?genre=%00"),
    ):
        assert_error(response, 422)
        assert response.get_json()["error"]["message"] == "genre cannot hold a NUL character"


def test_an_oversized_upload_gets_413(site, tmp_path):
    app, _, paths = site
    small = create_app(
        {
            "SETTINGS": app.extensions["mirsearch"].settings,
            "TESTING": True,
            "MAX_CONTENT_LENGTH": 10_000,
        }
    )
    response = upload(small.test_client(), "/api/search", clip_bytes(paths[0], tmp=tmp_path))
    assert_error(response, 413)
    assert "over the limit of 10,000 bytes" in response.get_json()["error"]["message"]
    settings = app.extensions["mirsearch"].settings  # a video platform's limit, by variable
    raised = Settings.from_env({"MIRSEARCH_MAX_UPLOAD_MB": "500"}, home=settings.home)
    assert create_app({"SETTINGS": raised}).config["MAX_CONTENT_LENGTH"] == 500 * 1024 * 1024


def test_pages_render_and_escape_tag_values(site):
    _, client, _ = site
    for url in ("/", "/catalog", "/catalog?genre=jazz&page=1", "/duplicates"):
        assert client.get(url).status_code == 200, url
    hostile = client.get("/api/tracks?q=script").get_json()["tracks"][0]["track_id"]
    page = client.get(f"/tracks/{hostile}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<polygon points=" in page
    search_page = client.get("/").get_data(as_text=True)
    assert 'max="1000"' in search_page  # the API's bound on k, not a page's own
    assert 'accept="audio/*,video/*"' in search_page  # videos had been hidden in the picker
    missing = client.get("/tracks/99999")
    assert missing.status_code == 404 and "no track with id" in missing.get_data(as_text=True)


def test_the_catalog_page_past_its_end_shows_the_last_and_keeps_the_genre_chosen(site):
    _, client, _ = site
    past = client.get("/catalog?page=99999&per_page=5").get_data(as_text=True)
    assert "Page 2 of 2" in past and 'rel="next"' not in past  # 7 tracks, 5 a page
    chosen = client.get("/catalog?genre=JAZZ").get_data(as_text=True)  # genres are any case
    assert re.search(r'<option value="jazz" selected>', chosen)


def test_every_api_route_is_in_the_openapi_document(site):
    app, client, _ = site
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    documented = set(spec["paths"])
    routes = {
        rule.rule.replace("<int:track_id>", "{track_id}")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    assert routes == documented
    json.dumps(spec)  # serialisable as served


def test_examine_answers_search_match_and_classify_from_one_reading(site, tmp_path, monkeypatch):
    """The site's one question for a new clip gives what the three endpoints give, from one
    upload decoded once and analysed once (they decoded it three times and analysed it twice)."""
    from mirsearch import api
    from mirsearch.embeddings import Embedder

    _, client, paths = site
    data = clip_bytes(paths[3], start_s=5.0, seconds=15.0, suffix=".mp3", tmp=tmp_path)
    searched = upload(client, "/api/search", data, k="3", genre="jazz").get_json()
    matched = upload(client, "/api/match", data).get_json()
    classified = upload(client, "/api/classify", data, similar="0").get_json()
    decoded, analysed = [], []
    load, analyse = api.audio.load, Embedder.analyse
    monkeypatch.setattr(api.audio, "load", lambda *a, **kw: decoded.append(a) or load(*a, **kw))
    monkeypatch.setattr(
        Embedder, "analyse", lambda *a, **kw: analysed.append(a) or analyse(*a, **kw)
    )
    response = upload(client, "/api/examine", data, k="3", genre="jazz")
    body = response.get_json()
    assert response.status_code == 200 and (len(decoded), len(analysed)) == (1, 1)
    assert set(body) == {"query", "results", "matches", "genre", "probabilities", "tags"}
    assert body["results"] == searched["results"]
    assert body["matches"] == matched["matches"] and body["matches"][0]["path"] == str(paths[3])
    assert {k: body[k] for k in ("genre", "probabilities", "tags")} == {
        k: classified[k] for k in ("genre", "probabilities", "tags")
    }
    assert_error(upload(client, "/api/examine", data, k="0"), 422)
    assert_error(upload(client, "/api/examine", data, genre="polka"), 422)
    assert len(decoded) == 1  # a bad parameter is told before the file is read


def test_each_upload_documents_the_form_fields_its_route_reads(site):
    _, client, _ = site
    paths = client.get("/api/openapi.json").get_json()["paths"]
    fields = {
        route: set(
            paths[route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
                "properties"
            ]
        )
        for route in ("/api/search", "/api/match", "/api/classify", "/api/examine")
    }
    assert fields == {
        "/api/search": {"file", "k", "genre"},
        "/api/examine": {"file", "k", "genre"},
        "/api/match": {"file"},
        "/api/classify": {"file", "similar"},
    }


def test_schemathesis_finds_no_server_errors(site):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        response_schema_conformance,
        status_code_conformance,
    )

    app, _, _ = site
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures = []
    for operation in schema.get_all_operations():
        operation = operation.ok()

        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,  # the same requests every run: a failure reproduces
        )
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            case.validate_response(
                response,
                checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
            )

        check()
    assert failures == []


@pytest.fixture
def copied_home(site, tmp_path):
    """Settings over a copy of the site's home (catalog and index), free to be damaged."""
    import shutil

    settings = site[0].extensions["mirsearch"].settings
    shutil.copytree(settings.home, tmp_path / "home")
    return dataclasses.replace(settings, home=tmp_path / "home")


def test_an_index_built_by_another_model_gets_503_and_says_to_reindex(site, copied_home, tmp_path):
    from mirsearch.catalog import Catalog

    catalog = Catalog(copied_home.db_url)
    generation = catalog.index_state().generation
    catalog.close()
    meta = path_of(copied_home.index_dir, "meta", generation)
    meta.write_text(meta.read_text().replace('"model_hash": "', '"model_hash": "another-'))
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    response = upload(client, "/api/search", clip_bytes(site[2][0], tmp=tmp_path))
    assert_error(response, 503)
    error = response.get_json()["error"]
    assert error["code"] == "index_mismatch" and "mirsearch index" in error["message"]
    assert client.get("/api/tracks").status_code == 200  # the catalog itself still answers
    health = client.get("/api/health").get_json()  # it had said "ok" while every query failed
    assert health["status"] == "degraded" and "mirsearch index" in health["problem"]


def test_a_catalog_database_that_is_not_one_gets_503_and_says_so(copied_home):
    for leftover in copied_home.home.glob("catalog.db-*"):  # its write-ahead log: pages too
        leftover.unlink()
    (copied_home.home / "catalog.db").write_text("garbage")
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    for response in (client.get("/api/tracks"), client.get("/api/health")):
        assert_error(response, 503)
        error = response.get_json()["error"]
        assert error["code"] == "catalog_unavailable" and "not a database" in error["message"]


def test_a_catalog_database_lost_while_serving_gets_503_and_says_so(copied_home):
    """A database server stopped under a running site (here: the table a listing reads gone
    from under a client that had used it) had been a 500 'internal_error'."""
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    assert client.get("/api/tracks").status_code == 200
    engine = sa.create_engine(copied_home.db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE tracks RENAME TO tracks_elsewhere"))
    engine.dispose()
    response = client.get("/api/tracks")
    assert_error(response, 503)
    error = response.get_json()["error"]
    assert error["code"] == "catalog_unavailable" and "no such table: tracks" in error["message"]


def test_a_catalog_database_moved_away_while_serving_gets_503_and_health_says_so(
    site, copied_home, tmp_path
):
    """Its connections went on reading the file moved away while the index was looked for at
    the path: queries had answered 404 'the catalog is empty', and health 'ok'."""
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    clip = clip_bytes(site[2][0], tmp=tmp_path)
    assert upload(client, "/api/search", clip).status_code == 200
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for file in copied_home.home.glob("catalog.db*"):
        file.rename(elsewhere / file.name)
    for response in (
        upload(client, "/api/search", clip),
        upload(client, "/api/match", clip),
        client.get("/api/tracks"),
        client.get("/api/health"),
    ):
        assert_error(response, 503)
        error = response.get_json()["error"]
        assert error["code"] == "catalog_unavailable" and "moved or deleted" in error["message"]
    assert not (copied_home.home / "catalog.db").exists()  # no empty catalog made in its place


def test_health_and_a_genre_filter_read_no_genre_counts(site, monkeypatch):
    """A load balancer probes health every few seconds, and every filtered query checked its
    genres: both had computed the catalog's genre counts, every row read."""
    app, client, _ = site
    catalog = app.extensions["mirsearch"].catalog

    def every_row():
        raise AssertionError("health read every row for the genres")

    monkeypatch.setattr(catalog, "genres", every_row)
    health = client.get("/api/health")
    assert health.status_code == 200 and health.get_json()["tracks"] == 7
    similar = client.get("/api/tracks/1/similar?genre=jazz")  # nor a genre filter it knows
    assert similar.status_code == 200 and similar.get_json()["results"]
    jazz = {t["track_id"] for t in client.get("/api/tracks?genre=jazz").get_json()["tracks"]}
    assert {r["track_id"] for r in similar.get_json()["results"]} <= jazz


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """A client over two demo tracks and a copy of each (a re-encode, a 20 s excerpt)."""
    music = tmp_path_factory.mktemp("copied")
    first, second = write_demo_catalog(music, n_tracks=2)
    write(music / "first-again.mp3", load(first).samples, 16_000)
    write(music / "second-excerpt.wav", load(second).samples[5 * 16_000 : 25 * 16_000], 16_000)
    settings = Settings.from_env({}, home=tmp_path_factory.mktemp("copied-home"))
    Engine(settings).index_paths([music])
    return create_app({"SETTINGS": settings, "TESTING": True}).test_client()


def test_duplicate_groups_come_in_pages_on_request(copied):
    """A large catalog's groups (621 of 2,583 tracks: 456 KB, the page 826 KB) come a page at a
    time where asked (the site's page always), each group once; without page or per_page, all."""
    client = copied
    every = client.get("/api/duplicates").get_json()
    assert every["total"] == len(every["groups"]) == 2  # each track with its copy
    named = {
        frozenset(t["title"] or Path(t["path"]).name for t in g["tracks"]) for g in every["groups"]
    }
    assert named == {
        frozenset({"Demo 1", "first-again.mp3"}),
        frozenset({"Demo 2", "second-excerpt.wav"}),
    }
    paged = [
        client.get(f"/api/duplicates?per_page=1&page={n}").get_json()
        for n in range(1, every["total"] + 2)
    ]
    assert [p["groups"] for p in paged[:-1]] == [[g] for g in every["groups"]]
    assert paged[-1]["groups"] == [] and paged[0]["total"] == every["total"]
    assert (paged[0]["page"], paged[0]["per_page"]) == (1, 1)
    alone = client.get("/api/duplicates?page=2").get_json()  # it had been every group
    assert (alone["page"], alone["per_page"], alone["groups"]) == (2, 50, every["groups"][50:])
    assert_error(client.get("/api/duplicates?per_page=0"), 422)
    past = client.get("/duplicates?page=99").get_data(as_text=True)  # the last page instead
    assert "<h2>Group 1</h2>" in past and 'class="pager"' not in past
    evidence = [e for g in every["groups"] for e in g["evidence"]]
    assert all(f"for {e['duration_s']:.1f} s;" in past for e in evidence)  # "for 44.94 s" had
    assert not re.search(r"\d\.\d\d+ s\b", past)  # beside the search page's "for 44.9 s"


def test_the_search_page_folds_away_the_genres_past_the_most_common(site, monkeypatch):
    """File tags of a large catalog name hundreds of genres: 706 chips had filled the page."""
    from web import pages

    app, client, _ = site
    many = [(f"genre {i:03d}", 1000 - i) for i in range(300)]
    monkeypatch.setattr(app.extensions["mirsearch"].catalog, "genres", lambda: many)
    page = client.get("/").get_data(as_text=True)
    shown, folded = page.split('<details class="more-genres">')
    assert shown.count('class="chip"') == pages.CHIPS and "genre 000" in shown
    assert f"{300 - pages.CHIPS} more genres" in folded
    assert folded.count('class="chip"') == 300 - pages.CHIPS and "genre 299" in folded


def test_every_answer_forbids_sniffing_framing_and_foreign_scripts(site):
    from web import SECURITY_HEADERS

    _, client, _ = site
    for url in ("/", "/catalog", "/api/tracks", "/api/tracks/1/audio", "/no-such-page"):
        headers = client.get(url).headers
        assert headers["X-Content-Type-Options"] == "nosniff", url
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], url
        assert headers["Referrer-Policy"] == "same-origin", url  # a page's query stays here
        assert all(headers[name] == value for name, value in SECURITY_HEADERS.items()), url


def test_audio_serves_only_an_indexed_track_as_it_was_indexed(tmp_path, monkeypatch):
    """A link in a catalog folder to a file that is not music is recorded as a failed track: its
    path (here a secret) is never served, nor is a track's file changed in place or swapped for
    a link after it was indexed; the track page decodes neither."""
    from web import pages

    music, secret = tmp_path / "music", tmp_path / "secret.txt"
    music.mkdir()
    secret.write_text("TOPSECRET=1\n" * 100)
    (music / "notes.mp3").symlink_to(secret)
    song = music / "song.flac"
    write(song, render(demo_pieces(1, seed=5)[0], sample_rate=16_000), 16_000)
    settings = Settings.from_env({}, home=tmp_path / "home")
    Engine(settings).index_paths([music])
    client = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    rows = {
        Path(t["path"]).name: t for t in client.get("/api/tracks?per_page=500").get_json()["tracks"]
    }
    failed = Engine(settings).catalog.by_path(secret)
    assert failed is not None and failed.status == "failed"
    response = client.get(f"/api/tracks/{failed.id}/audio")
    assert_error(response, 404)
    assert "TOPSECRET" not in response.get_data(as_text=True)
    assert "it is failed" in response.get_json()["error"]["message"]
    song_id = rows["song.flac"]["track_id"]
    assert client.get(f"/api/tracks/{song_id}/audio").status_code == 200
    indexed = song.read_bytes()
    song.write_bytes(indexed[: len(indexed) // 2])  # changed in place, not indexed again
    response = client.get(f"/api/tracks/{song_id}/audio")
    assert_error(response, 404)
    assert "changed since it was indexed" in response.get_json()["error"]["message"]
    song.unlink()
    same_size = tmp_path / "same-size.txt"  # as large as the file indexed: only its path tells
    same_size.write_bytes(b"TOPSECRET=1\n".ljust(len(indexed), b"#"))
    song.symlink_to(same_size)
    response = client.get(f"/api/tracks/{song_id}/audio")
    assert_error(response, 404)
    assert "changed since it was indexed" in response.get_json()["error"]["message"]
    decoded = []
    monkeypatch.setattr(pages, "load", lambda path: decoded.append(path))
    page = client.get(f"/tracks/{failed.id}").get_data(as_text=True)
    assert "<audio" not in page and "it is failed" in page and decoded == []
    assert page.count("no audio to play") == 1  # "No audio to play here: track 1 has no audio..."
    assert "<dd>– BPM</dd>" not in page and "<dd>–</dd>" in page  # no unit beside no figure


def test_audio_of_a_track_whose_file_is_gone_is_404(site, copied_home):
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track

    catalog = Catalog(copied_home.db_url)
    with catalog.session() as session, session.begin():
        track = session.scalars(sa.select(Track).order_by(Track.id)).first()
        track.path, track.title = str(copied_home.home / "moved-away.flac"), None
        track_id = track.id
    catalog.close()
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    response = client.get(f"/api/tracks/{track_id}/audio")
    assert_error(response, 404)
    assert "no longer on disk" in response.get_json()["error"]["message"]
    assert client.get(f"/api/tracks/{track_id}").status_code == 200  # the row is still there
    page = client.get(f"/tracks/{track_id}").get_data(as_text=True)
    assert "file is no longer on disk" in page and "<audio" not in page
    assert "<title>moved-away.flac · mirsearch</title>" in page  # not the server's folders
    assert "<polygon points=" in page  # the waveform kept in the catalog


@pytest.mark.parametrize("refusing", ["open", "stat"])
def test_a_track_whose_file_the_server_may_not_read_is_404_and_its_page_says_why(
    site, monkeypatch, refusing
):
    """A file closed to the server (open refused) or in a folder it may not pass through (stat
    refused) had been a 500. Tests run as root, whom chmod does not stop: the call refuses."""
    import builtins
    import errno
    import os

    _, client, _ = site
    track = client.get("/api/tracks").get_json()["tracks"][0]
    module = builtins if refusing == "open" else os
    called = getattr(module, refusing)

    def refused(path, *args, **kwargs):
        if str(path) == track["path"]:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return called(path, *args, **kwargs)

    monkeypatch.setattr(module, refusing, refused)
    response = client.get(f"/api/tracks/{track['track_id']}/audio")
    assert_error(response, 404)
    told = "file cannot be read (Permission denied)"
    assert response.get_json()["error"]["message"] == f"track {track['track_id']}'s {told}"
    page = client.get(f"/tracks/{track['track_id']}")
    assert page.status_code == 200
    assert told in page.get_data(as_text=True) and "<audio" not in page.get_data(as_text=True)


def test_audio_of_a_file_named_with_a_newline_is_served(site, copied_home):
    """Its name went into Content-Disposition, where a header cannot hold a newline: a 500."""
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track

    catalog = Catalog(copied_home.db_url)
    with catalog.session() as session, session.begin():
        track = session.scalars(sa.select(Track).order_by(Track.id)).first()
        renamed = copied_home.home / "two\nlines.flac"
        renamed.write_bytes(Path(track.path).read_bytes())
        track.path, track_id = str(renamed), track.id
    catalog.close()
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    response = client.get(f"/api/tracks/{track_id}/audio")
    assert response.status_code == 200 and response.data == renamed.read_bytes()
    assert "two_lines.flac" in response.headers["Content-Disposition"]


def test_a_video_track_is_served_as_video(site, copied_home, tmp_path):
    """An indexed video had been served as application/octet-stream: MIMETYPES knew audio."""
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track

    video = write_video(tmp_path / "clip.mp4", [tone(440.0, 1.0)], video_s=1.0)
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    catalog = Catalog(copied_home.db_url)
    for suffix, mimetype in [
        (".mp4", "video/mp4"),
        (".mkv", "video/x-matroska"),
        (".ts", "video/mp2t"),
    ]:
        named = video.with_suffix(suffix)
        named.write_bytes(video.read_bytes())
        with catalog.session() as session, session.begin():
            track = session.scalars(sa.select(Track).order_by(Track.id)).first()
            track.path, track.size_bytes, track_id = str(named), named.stat().st_size, track.id
        response = client.get(f"/api/tracks/{track_id}/audio")
        assert response.status_code == 200 and response.mimetype == mimetype
    catalog.close()


def test_a_clip_sent_as_text_an_undecodable_codec_and_bare_api_are_told_in_json(site, tmp_path):
    """A clip sent as a text field (curl's `file=<clip`) passed Werkzeug's form-field limit and
    was told "the upload is over the limit of 50 MB"; a codec FFmpeg has no decoder for was a
    500; `/api` without its slash got the site's HTML page."""
    _, client, paths = site
    data = clip_bytes(paths[0], seconds=20.0, tmp=tmp_path)
    as_text = client.post(
        "/api/match", data={"file": data.decode("latin-1")}, content_type="multipart/form-data"
    )
    assert_error(as_text, 413)
    assert "curl -F file=@clip.mp3" in as_text.get_json()["error"]["message"]
    named = client.post("/api/match", data={"file": "clip.mp3"}, content_type="multipart/form-data")
    assert_error(named, 400)  # it had asked whether the upload was cut off
    assert "arrived as text" in named.get_json()["error"]["message"]
    strange = bytearray(data)
    at = strange.index(b"fmt ") + 8
    strange[at : at + 2] = (0x9999).to_bytes(2, "little")
    for url in ("/api/search", "/api/match", "/api/classify"):
        response = upload(client, url, bytes(strange))
        assert_error(response, 415)
        assert "no decoder" in response.get_json()["error"]["message"]
    assert_error(client.get("/api"), 404)


def test_too_many_form_fields_and_text_fields_only_are_told_as_such(site, tmp_path):
    """Werkzeug's limit of 1,000 parts had been told as a field over 500,000 bytes, and a form
    of text fields only as an upload perhaps cut off."""
    _, client, paths = site
    data = clip_bytes(paths[0], seconds=5.0, tmp=tmp_path)
    fields = {f"f{i}": "x" for i in range(1000)}
    many = upload(client, "/api/search", data, **fields)  # 1,001 parts of a byte or so
    assert_error(many, 413)
    assert many.get_json()["error"]["message"].startswith("the form has over 1,000 fields")
    as_text = client.post(  # the one field over 500,000 bytes is still told as before
        "/api/search", data={"file": "x" * 600_000}, content_type="multipart/form-data"
    )
    assert "curl -F file=@clip.mp3" in as_text.get_json()["error"]["message"]
    only_text = client.post(
        "/api/search", data=dict(list(fields.items())[:999]), content_type="multipart/form-data"
    )
    assert_error(only_text, 400)
    assert only_text.get_json()["error"]["message"] == (
        "send the audio in a field named 'file': the form had text fields only "
        "('f0', 'f1', 'f2', 'f3', 'f4', …)"
    )


def test_a_track_page_draws_the_waveform_the_catalog_keeps_without_decoding(
    site, copied_home, monkeypatch
):
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track, TrackWaveform
    from web import pages

    decoded = []
    monkeypatch.setattr(pages, "load", lambda path: decoded.append(path) or load(path))
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    catalog = Catalog(copied_home.db_url)
    with catalog.session() as session:
        first, second = session.scalars(sa.select(Track).order_by(Track.id).limit(2))
    peaks = catalog.waveform(first.id).peaks
    assert len(peaks) == 400 and max(peaks) == 255
    kept = client.get(f"/tracks/{first.id}").get_data(as_text=True)
    points = re.search(r'<polygon points="([^"]+)"', kept).group(1).split()
    assert len(points) == 800 and decoded == []  # 400 peaks, above and below the axis
    with catalog.session() as session, session.begin():  # as indexed before migration 0006
        session.execute(sa.delete(TrackWaveform).where(TrackWaveform.track_id == second.id))
    catalog.close()
    assert "<polygon points=" in client.get(f"/tracks/{second.id}").get_data(as_text=True)
    assert decoded == [Path(second.path)]


def test_uploads_are_decoded_from_a_temp_file_that_is_always_deleted(site, tmp_path, monkeypatch):
    import tempfile

    app, client, paths = site
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(uploads))
    engine = app.extensions["mirsearch"]
    seen = []
    search = engine.search

    def spying(path, **options):
        seen.append((path, path.is_file(), path.parent == uploads))
        return search(path, **options)

    monkeypatch.setattr(engine, "search", spying)
    good = clip_bytes(paths[1], tmp=tmp_path)
    assert upload(client, "/api/search", good).status_code == 200
    assert seen and seen[0][1:] == (True, True)  # decoded from a file in the temp folder ...
    assert list(uploads.iterdir()) == []  # ... gone once answered
    assert upload(client, "/api/match", good).status_code == 200
    assert upload(client, "/api/classify", good).status_code == 200
    assert upload(client, "/api/search", b"not audio" * 100, name="x.mp3").status_code == 415
    short = write(tmp_path / "short.wav", tone(440.0, 1.0), 16_000).read_bytes()
    assert upload(client, "/api/search", short).status_code == 422
    assert upload(client, "/api/search", b"", name="empty.wav").status_code == 400
    assert list(uploads.iterdir()) == []  # after answers and errors alike


def test_an_empty_catalog_answers_with_clear_messages(tmp_path):
    settings = Settings.from_env({}, home=tmp_path / "empty-home")
    client = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    clip = write(tmp_path / "clip.wav", tone(440.0, 4.0) + tone(660.0, 4.0), 16_000).read_bytes()
    for url in ("/api/search", "/api/match"):
        response = upload(client, url, clip)
        assert_error(response, 404)
        assert "catalog is empty" in response.get_json()["error"]["message"]
    classified = upload(client, "/api/classify", clip)
    assert classified.status_code == 200 and classified.get_json()["similar"] == []
    assert client.get("/api/duplicates").get_json() == {"groups": [], "total": 0}
    assert client.get("/api/health").get_json()["tracks"] == 0
    assert client.get("/api/tracks").get_json()["total"] == 0


def test_unknown_urls_and_methods_say_what_to_ask_instead(site):
    _, client, _ = site
    for url in ("/api/tracks/-1", "/api/tracks/abc", "/api/tracks/abc/audio"):
        response = client.get(url)
        assert_error(response, 404)
        assert response.get_json()["error"]["message"] == (
            f"track ids are positive whole numbers, not {url.split('/')[3]!r}"
        )
    assert "positive whole numbers" in client.get("/tracks/abc").get_data(as_text=True)
    huge = client.get("/api/tracks/" + "9" * 5_000)  # past what the route's converter takes
    assert_error(huge, 404)
    assert huge.get_json()["error"]["message"].startswith("no track with id 99999")
    unknown = client.get("/api/nosuch")
    assert_error(unknown, 404)
    assert "/api/openapi.json" in unknown.get_json()["error"]["message"]
    assert client.get("/api/tracks/99999").get_json()["error"]["message"] == (
        "no track with id 99999"
    )
    wrong = client.get("/api/search")
    assert_error(wrong, 405)
    assert wrong.get_json()["error"]["message"] == (
        "/api/search takes POST with the audio in a multipart field 'file', not GET"
    )
    assert client.delete("/api/tracks").get_json()["error"]["message"] == (
        "/api/tracks takes GET, not DELETE"
    )


def test_the_catalog_page_is_labelled_keeps_per_page_and_says_an_unknown_genre(site):
    _, client, _ = site
    page = client.get("/catalog?genre=nosuch&per_page=3").get_data(as_text=True)
    assert 'role="alert">No track in the catalog has the genre “<bdi>nosuch</bdi>”' in page
    assert '<option value="nosuch" selected>nosuch (not in the catalog)</option>' in page
    assert re.search(r'<option value="" >All genres', page)  # not the one selected
    assert '<input type="hidden" name="per_page" value="3">' in page
    most = client.get("/catalog?per_page=100000").get_data(as_text=True)  # 200 at most
    assert '<input type="hidden" name="per_page" value="200">' in most
    spelled = client.get("/catalog?genre=%20JAZZ%20").get_data(as_text=True)  # as listed: jazz
    assert "not in the catalog" not in spelled and '<option value="jazz" selected>' in spelled
    assert re.search(r'<label>Search <input name="q"', page)
    assert re.search(r'<label>Genre <select name="genre">', page)
    one = client.get("/catalog?q=script").get_data(as_text=True)
    assert "1 track</small>" in one and 'role="alert"' not in one
    assert "7 tracks</small>" in client.get("/catalog").get_data(as_text=True)
    assert '<link rel="icon" href="data:,">' in page  # no request for /favicon.ico


def test_the_catalog_shows_the_file_s_genre_tag_a_filter_kept_a_track_by(site, copied_home):
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track

    catalog = Catalog(copied_home.db_url)
    with catalog.session() as session, session.begin():
        tagged, same = session.scalars(sa.select(Track).order_by(Track.id).limit(2))
        tagged.genre, tagged.tag_genre = "classical", "Romantic Classical"
        same.genre, same.tag_genre = "rock", " Rock "
        ids = tagged.id, same.id
    catalog.close()
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    page = client.get("/catalog?genre=romantic+classical").get_data(as_text=True)
    assert "1 track</small>" in page
    # it had said "classical" alone: the row did not say why the filter had kept it
    assert "<td><bdi>classical</bdi> · tagged <bdi>Romantic Classical</bdi></td>" in page
    listed = client.get("/catalog?per_page=200").get_data(as_text=True)
    row = re.search(rf'href="/tracks/{ids[1]}".*?</tr>', listed, re.S).group()
    assert "<td><bdi>rock</bdi></td>" in row and "tagged" not in row  # the same genre, once


def test_a_track_page_gives_the_score_of_each_track_like_it_as_the_api_does(site):
    _, client, _ = site
    track_id = client.get("/api/tracks").get_json()["tracks"][0]["track_id"]
    hits = client.get(f"/api/tracks/{track_id}/similar?k=8").get_json()["results"]
    page = client.get(f"/tracks/{track_id}").get_data(as_text=True).split("More like this")[1]
    listed = re.findall(r'<li><a href="/tracks/(\d+)">.*?</li>', page, re.S)
    assert [int(i) for i in listed] == [h["track_id"] for h in hits] and hits
    for hit in hits:  # a bar alone had said nothing to a screen reader, nor the number
        assert f'<span class="muted">{hit["score"]:.3f}</span>' in page


def test_the_site_s_menu_says_which_page_is_open_and_each_menu_is_named(site):
    _, client, _ = site
    for url, endpoint in (("/", "/"), ("/catalog", "/catalog"), ("/duplicates", "/duplicates")):
        page = client.get(url).get_data(as_text=True)
        menu = re.search(r'<nav aria-label="Site">(.*?)</nav>', page, re.S).group(1)
        assert re.findall(r'<a href="([^"]*)" aria-current="page">', menu) == [endpoint], url
    track_id = client.get("/api/tracks").get_json()["tracks"][0]["track_id"]
    assert 'aria-current="page"' not in client.get(f"/tracks/{track_id}").get_data(as_text=True)
    # two menus on a page had both been announced as "navigation", neither named
    paged = client.get("/catalog?per_page=2").get_data(as_text=True)
    assert '<nav class="pager" aria-label="Pages">' in paged


def test_a_track_page_lists_its_other_versions_both_ways_by_title(site, copied_home):
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track

    catalog = Catalog(copied_home.db_url)
    with catalog.session() as session, session.begin():
        session.execute(sa.update(Track).values(duplicate_of=None))  # only the link made here
        original, copy, other = session.scalars(sa.select(Track).order_by(Track.id).limit(3))
        copy.duplicate_of = original.id
        ids, titles = (original.id, copy.id, other.id), (original.title, copy.title)
    catalog.close()
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    for shown, listed in ((ids[0], 1), (ids[1], 0)):
        page = client.get(f"/tracks/{shown}").get_data(as_text=True)
        assert (
            f'<dt>Other versions</dt><dd><ul class="versions"><li>'
            f'<a href="/tracks/{ids[listed]}"><bdi>{titles[listed]}</bdi></a></li></ul></dd>'
        ) in page
    assert "Other versions" not in client.get(f"/tracks/{ids[2]}").get_data(as_text=True)


def test_a_right_to_left_override_in_a_tag_is_isolated_on_every_page(site, copied_home):
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track

    override = "\u202eevil.mp3 gnos"  # U+202E: the rest of its line had been drawn reversed
    catalog = Catalog(copied_home.db_url)
    with catalog.session() as session, session.begin():
        first, other = session.scalars(sa.select(Track).order_by(Track.id).limit(2))
        for column in ("title", "artist", "album", "tag_genre"):
            setattr(first, column, override)
        other.duplicate_of, ids = first.id, (first.id, other.id)
    catalog.close()
    app = create_app({"SETTINGS": copied_home, "TESTING": True})
    groups = [
        {
            "tracks": [
                {"track_id": ids[0], "path": "/a.mp3", "title": override, "speed": 1.0},
                {"track_id": ids[1], "path": "/b.mp3", "title": None, "speed": 1.02},
            ],
            "evidence": [],
        }
    ]
    app.extensions["mirsearch"].dupes_page = lambda **page: (groups, 1)
    client = app.test_client()
    for url in ("/", "/catalog", f"/tracks/{ids[0]}", f"/tracks/{ids[1]}", "/duplicates"):
        page = client.get(url).get_data(as_text=True)
        assert page.count(override) >= (2 if url == "/" else 1), url
        # in a <bdi>, or between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE (a <title>,
        # an <option>), or an attribute never drawn: it reverses itself only
        outside = re.sub(r'<bdi>[^<]*</bdi>|\u2068[^\u2069]*\u2069|="[^"]*"', "", page)
        assert "\u202e" not in outside, url


def test_a_title_of_zero_width_spaces_only_is_shown_as_the_file_s_name(site, copied_home):
    from mirsearch.catalog import Catalog
    from mirsearch.schema import Track

    catalog = Catalog(copied_home.db_url)
    with catalog.session() as session, session.begin():
        track = session.scalars(sa.select(Track).order_by(Track.id)).first()
        track.title, track_id, file = "\u200b\u200b", track.id, Path(track.path).name
    catalog.close()
    client = create_app({"SETTINGS": copied_home, "TESTING": True}).test_client()
    link = f'<a href="/tracks/{track_id}"><bdi>{file}</bdi></a>'  # it had been 0 px wide
    assert link in client.get("/catalog").get_data(as_text=True)
    page = client.get(f"/tracks/{track_id}").get_data(as_text=True)
    assert f"<title>{file} · mirsearch</title>" in page and f"<h1><bdi>{file}</bdi></h1>" in page


def test_the_duplicates_page_names_tracks_and_says_how_fast_each_plays(site, monkeypatch):
    app, client, _ = site
    track = {"path": "/music/brick.ogg", "title": "Brick <b>"}
    group = {  # as `dupes` reports it: brick_faster.flac plays 2 % faster
        "tracks": [
            {"track_id": 3, **track, "speed": 1.0},
            {"track_id": 8, "path": "/music/brick_faster.flac", "title": None, "speed": 1.02},
            {"track_id": 9, "path": "/music/brick copy.mp3", "title": None, "speed": 1.0},
            {"track_id": 10, "path": "/music/brick_slower.flac", "title": None, "speed": 0.97},
        ],
        "evidence": [
            {
                "query_track_id": 3,
                "track_id": 8,
                "query_offset_s": 0.0,
                "track_offset_s": 0.0,
                "duration_s": 30.0,
                "speed": 0.98,
                "score": 1.0,
            },
            {
                "query_track_id": 9,
                "track_id": 3,
                "query_offset_s": 1.0,
                "track_offset_s": 2.0,
                "duration_s": 20.0,
                "speed": 1.0,
                "score": 0.9,
            },
        ],
    }
    monkeypatch.setattr(app.extensions["mirsearch"], "dupes_page", lambda **page: ([group], 1))
    page = re.sub(r"\s+", " ", client.get("/duplicates").get_data(as_text=True))
    brick, faster, copy = (
        '<a href="/tracks/3"><bdi>Brick &lt;b&gt;</bdi></a>',
        '<a href="/tracks/8"><bdi>brick_faster.flac</bdi></a>',
        '<a href="/tracks/9"><bdi>brick copy.mp3</bdi></a>',
    )
    assert f'<li>{faster} <span class="muted">plays 2 % faster than {brick}</span></li>' in page
    assert f"plays at the same speed as {brick}</span>" in page
    assert f'brick_slower.flac</bdi></a> <span class="muted">plays 3 % slower than {brick}' in page
    assert (
        f"<li>{brick} at 0.0 s = {faster} at 0.0 s for 30.0 s; "
        f"{faster} plays 2 % faster than {brick} (match score 1.00)</li>"
    ) in page
    assert f"{brick} plays at the same speed as {copy} (match score 0.90)" in page


@pytest.mark.parametrize(
    ("number", "told"), [("ENOSPC", "No space left on device"), ("EDQUOT", "Disk quota exceeded")]
)
def test_a_full_temporary_folder_is_a_503_that_says_so(site, monkeypatch, tmp_path, number, told):
    """It had been a 500 'something went wrong on our side', like a bug; a quota used up is the
    same to the user."""
    import errno

    import web.api

    _, client, paths = site
    data = clip_bytes(paths[0], tmp=tmp_path)

    def full(*args, **kwargs):
        raise OSError(getattr(errno, number), told)

    monkeypatch.setattr(web.api.tempfile, "mkstemp", full)
    response = upload(client, "/api/search", data)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "storage_full" and told in error["message"]


def live_webm(path: Path, samples: np.ndarray, sr: int = 48_000) -> Path:
    """`samples` (mono, at `sr`) in Opus in a WebM that declares no length, as a browser's
    MediaRecorder writes one (Matroska's live mode: no duration, no cues)."""
    with av.open(str(path), "w", format="webm", options={"live": "1"}) as out:
        stream = out.add_stream("libopus", rate=sr, layout="mono")
        for start in range(0, samples.size, 960):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 960], format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_a_long_upload_waits_for_a_slot_and_a_short_one_never_does(site, tmp_path):
    """An upload of ServerConfig.long_upload_s of audio or more takes one of the worker's slots
    for long uploads while it is answered. With the only one taken (another long upload being
    answered), it is a 503 that says so, with Retry-After, once ServerConfig.long_wait_s has
    passed, while a shorter one is answered at once; with the slot free it is answered and gives
    the slot back. A browser's recording, which declares no length, is measured by its packets.
    Six 29 min uploads at once had held 3.1 GB, nothing bounding how many a worker took."""
    app, _, paths = site
    settings = app.extensions["mirsearch"].settings
    server = dataclasses.replace(settings.server, long_upload_s=8.0, long_wait_s=0.1)
    gated = create_app({"SETTINGS": dataclasses.replace(settings, server=server), "TESTING": True})
    client, slots = gated.test_client(), gated.extensions[LONG_UPLOADS]
    long_clip = clip_bytes(paths[0], seconds=10.0, tmp=tmp_path)
    short_clip = clip_bytes(paths[0], seconds=6.0, tmp=tmp_path)
    recording = live_webm(tmp_path / "recording.webm", tone(440.0, 10.0, sr=48_000)).read_bytes()
    assert slots.acquire(blocking=False)  # another long upload is being answered
    for data, name in ((long_clip, "clip.wav"), (recording, "recording.webm")):
        response = upload(client, "/api/match", data, name=name)
        assert_error(response, 503)
        assert response.headers["Retry-After"] == "60"
        assert "busy with other long uploads" in response.get_json()["error"]["message"]
    assert upload(client, "/api/match", short_clip).status_code == 200
    slots.release()
    assert upload(client, "/api/match", long_clip).status_code == 200
    assert upload(client, "/api/examine", recording, name="recording.webm").status_code == 200
    assert slots.acquire(blocking=False)  # given back


SERVE_QUICKLY = """
import sys
from pathlib import Path
from mirsearch.config import Settings
from web import SECURITY_HEADERS, create_app
from web.server import Server

class Quick(Server):
    def load(self):  # the model and index loaded on first use: no answer here needs them
        return create_app({"SETTINGS": self.settings})

settings = Settings.from_env({}, home=Path(sys.argv[1]))
Quick(settings, host="127.0.0.1", port=int(sys.argv[2]), workers=1).run()
"""


def test_a_request_line_too_long_for_gunicorn_is_told_in_json_with_the_headers(tmp_path):
    import http.client
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE_QUICKLY, str(tmp_path), str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = server.stderr.readline()
        assert "serving on" in said and said.endswith(" (1 worker process)\n")  # not "processes"

        def get(url: str):
            for _ in range(100):  # the worker may still be starting
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    connection.request("GET", url)
                    response = connection.getresponse()
                    return response, response.read()
                except ConnectionError:
                    time.sleep(0.05)
            raise AssertionError("the server never answered")

        # 5,500 bytes had been over gunicorn's 4,094 (an HTML 414): the app answers it now
        response, body = get("/api/tracks?" + "&".join(["genre=rock"] * 500))
        assert response.status == 200 and json.loads(body)["tracks"] == []
        response, body = get("/api/tracks?" + "&".join(["genre=rock"] * 800))
        assert response.status == 414 and response.getheader("Content-Type") == "application/json"
        assert json.loads(body)["error"] == {
            "code": "uri_too_long",
            "message": "the request line is over 8,190 bytes: ask with fewer or shorter parameters",
        }
        for name in ("X-Content-Type-Options", "Content-Security-Policy", "X-Frame-Options"):
            assert response.getheader(name) == SECURITY_HEADERS[name]
    finally:
        server.terminate()
        server.wait(timeout=30)
