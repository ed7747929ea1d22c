"""The web app's JSON API and pages through FastAPI's test client (real catalogues, real photos, real SQLite): the
identify contract, bad and hostile uploads, evidence, adding and searching records, collections and their exports,
and eight clients at once."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import png_with_size


@pytest.fixture(scope="module")
def client(sales, tmp_path_factory):
    import shutil

    from coinmatch.web.app import create_app
    from coinmatch.web.service import Service

    root = tmp_path_factory.mktemp("served")
    served = {name: root / name for name in sales}
    for name, path in sales.items():  # a copy: these tests add entries
        shutil.copytree(path, served[name])
    service = Service(served)
    with TestClient(create_app(service)) as c:
        c.served = served
        yield c
    service.close()


def upload(path: Path, field: str = "file", name: str | None = None):
    return {field: (name or path.name, path.read_bytes(), "image/jpeg")}


def test_identify_answers_what_search_json_prints(client, sold_photos):
    photo = sold_photos["both"][0]
    answer = client.post("/api/identify", files=upload(photo), data={"catalogue": "sale-1987", "verify": "true"})
    assert answer.status_code == 200 and answer.headers["x-query-id"]
    binary = str(Path(sys.executable).with_name("coinmatch"))
    cli = subprocess.run([binary, "search", str(client.served["sale-1987"]), str(photo), "--json", "--verify"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    got = answer.json()
    assert got["query"] == photo.name and set(got) == set(expected)
    assert [(m["id"], m["inliers"]) for m in got["results"]] == [(m["id"], m["inliers"]) for m in expected["results"]]
    assert got["results"][0]["id"] == photo.stem.removesuffix("_b")
    assert got["results"][0]["metadata"]["auction"] == "Example Auctions"


def test_identify_both_faces_and_default_catalogue(client, sold_photos):
    a, b = sold_photos["both"][:2]
    answer = client.post("/api/identify", files={**upload(a), **upload(b, "reverse")}, data={"top_k": "3"})
    assert answer.status_code == 200
    assert answer.json()["query"] == f"{a.name} + {b.name}" and len(answer.json()["results"]) == 3


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "text", "empty", "bomb"])
def test_a_bad_file_gets_a_clear_4xx_naming_it(client, broken_files, kind):
    answer = client.post("/api/identify", files={"file": (f"my {kind}.jpg", broken_files[kind].read_bytes(), "image/jpeg")})
    assert 400 <= answer.status_code < 500
    detail = answer.json()["detail"]
    assert f"my {kind}.jpg" in detail and "Traceback" not in detail


def test_hostile_uploads(client, sold_photos, monkeypatch):
    missing = client.post("/api/identify", data={"top_k": "3"})
    assert missing.status_code == 400 and "field 'file'" in missing.json()["detail"]
    # a file name that climbs out of every folder is only a label
    traversal = client.post("/api/identify", files=upload(sold_photos["both"][0], name="../../../../tmp/pwned.jpg"))
    assert traversal.status_code == 200 and traversal.json()["query"] == "pwned.jpg"
    assert not Path("/tmp/pwned.jpg").exists()
    bad_top = client.post("/api/identify", files=upload(sold_photos["both"][0]), data={"top_k": "0"})
    assert bad_top.status_code == 422
    unknown = client.post("/api/identify", files=upload(sold_photos["both"][0]), data={"catalogue": "nope"})
    assert unknown.status_code == 404 and "sale-1987" in unknown.json()["detail"]
    monkeypatch.setattr(client.app.state.service, "max_upload", 1000)
    big = client.post("/api/identify", files=upload(sold_photos["both"][0]))
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    page = client.post("/identify", files=upload(sold_photos["both"][0]))
    assert page.status_code == 413 and "the limit is" in page.text and "<form" in page.text


def test_bomb_in_the_page_is_a_message_not_a_stack_trace(client):
    page = client.post("/identify", files={"file": ("bomb.png", png_with_size(40_000, 40_000), "image/png")})
    assert page.status_code == 400 and "bomb.png: image too large" in page.text and "Traceback" not in page.text


def test_evidence_of_a_candidate(client, sold_photos):
    photo = sold_photos["both"][1]
    answer = client.post("/api/identify", files=upload(photo), data={"catalogue": "sale-1987", "verify": "true"})
    qid, best = answer.headers["x-query-id"], answer.json()["results"][0]
    evidence = client.get(f"/api/evidence/{qid}/sale-1987/{best['id']}").json()
    assert evidence["inliers"] == best["inliers"]  # the same verification as the search's
    assert abs(evidence["scale"] - 1) < 0.2 and set(evidence["images"]) == {"query", "aligned", "candidate", "matches"}
    for url in evidence["images"].values():
        image = client.get(url)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    page = client.get(f"/compare/{qid}/sale-1987/{best['id']}")
    assert page.status_code == 200 and f"{best['inliers']}</b> inliers" in page.text and 'id="blend"' in page.text
    assert client.get(f"/api/evidence/{'0' * 32}/sale-1987/{best['id']}").status_code == 404
    assert client.get(f"/api/evidence/{qid}/sale-1987/no-such-coin").status_code == 404


def test_add_an_entry_then_find_it_by_text_and_by_photo(client, sold_photos):
    photo = sold_photos["none"][0]  # a coin in neither sale
    before = client.post("/api/identify", files=upload(photo), data={"catalogue": "sale-1987"}).json()
    assert before["results"][0]["id"] != "NEW-1"
    added = client.post("/api/catalogues/sale-1987/entries", data={
        "id": "NEW-1", "metadata": json.dumps({"auction": "Private treaty", "date": "2001", "notes": "ex museum"})},
        files=upload(photo, "image"))
    assert added.status_code == 201 and added.json()["images"][0]["image"].startswith("images/")
    found = client.get("/api/catalogues/sale-1987/entries", params={"q": "private TREATY"}).json()
    assert found["total"] == 1 and found["entries"][0]["id"] == "NEW-1"
    assert client.get("/api/catalogues/sale-1987/entries", params={"q": "Example 12 May"}).json()["total"] == 24
    after = client.post("/api/identify", files=upload(photo), data={"catalogue": "sale-1987", "verify": "true"}).json()
    assert after["results"][0]["id"] == "NEW-1"  # searchable at once
    again = client.post("/api/catalogues/sale-1987/entries", data={"id": "NEW-1"}, files=upload(photo, "image"))
    assert again.status_code == 400 and "already in the catalogue" in again.json()["detail"]
    bad = client.post("/api/catalogues/sale-1987/entries", data={"id": "NEW-2"},
                      files={"image": ("x.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code == 400 and "x.jpg" in bad.json()["detail"]
    assert client.get("/api/catalogues/sale-1987/entries/NEW-2").status_code == 404  # nothing half-added
    assert client.get("/api/catalogues").json()["sale-1987"]["entries"] == 25


def test_a_collection_in_the_background_with_both_exports(client, sold_photos):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for p in sold_photos["both"][:2]:
            z.writestr(f"box 1/{p.name}", p.read_bytes())
    files = [("files", ("box.zip", archive.getvalue(), "application/zip")),
             ("files", (sold_photos["none"][1].name, sold_photos["none"][1].read_bytes(), "image/jpeg")),
             ("files", ("broken.jpg", b"\xff\xd8 broken", "image/jpeg"))]
    started = client.post("/api/collections", files=files, data={"verify": "true"})
    assert started.status_code == 202 and started.json()["total"] == 4
    job = started.json()["id"]
    while (state := client.get(f"/api/collections/{job}").json())["status"] in ("queued", "running"):
        assert client.get("/api/catalogues").status_code == 200  # other requests are served meanwhile
        time.sleep(0.2)
    assert state["status"] == "done" and state["done"] == 4 and state["matched"] == 2
    results = client.get(f"/api/collections/{job}", params={"results": True}).json()["results"]
    chains = {r["coin"]: [(a["catalogue"], a["date"]) for a in r["chain"]] for r in results}
    assert chains[f"box 1/{sold_photos['both'][0].stem}"] == [("sale-1975", "1975"), ("sale-1987", "12 May 1987")]
    exported = client.get(f"/collection/{job}/report.csv")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["decision"] for r in rows] == ["match", "match", "no_match", ""] and "broken.jpg" in rows[3]["error"]
    report = client.get(f"/collection/{job}/report.html")
    assert report.status_code == 200 and "Provenance chain" in report.text
    only = client.get(f"/collection/{job}", params={"only": "match"}).text
    assert only.count('class="decision-match"') == 2 and "decision-no_match" not in only
    empty = client.post("/api/collections", files=[("files", ("a.jpg", b"", "image/jpeg"))])
    assert empty.status_code == 400 and "no photos given" in empty.json()["detail"]
    bad_zip = client.post("/api/collections", files=[("files", ("b.zip", b"PK not a zip", "application/zip"))])
    assert bad_zip.status_code == 400 and "b.zip: not a readable zip" in bad_zip.json()["detail"]


def test_pages_and_the_local_api_page(client):
    for url in ("/identify", "/collection", "/catalogue/sale-1987", "/catalogue/sale-1987?q=lot", "/docs",
                "/catalogue/sale-1987/add", "/openapi.json"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "https://" not in page.text.replace("https://example", "") or url == "/openapi.json", url
    assert client.get("/vendor/swagger/swagger-ui-bundle.js").status_code == 200
    assert client.get("/catalogue/nope").status_code == 404
    assert client.get("/media/thumb/sale-1987/99999.jpg").status_code == 404


def test_eight_clients_at_once(client, sold_photos):
    photos = (sold_photos["both"] + sold_photos["one"])[:8]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: client.post("/api/identify", files=upload(p),
                                                      data={"catalogue": "sale-1987", "verify": "true"}), photos))
    assert [a.status_code for a in answers] == [200] * 8
    assert [a.json()["results"][0]["id"] for a in answers] == [p.stem.removesuffix("_b") for p in photos]


def test_coinmatch_serve_as_a_real_process(sales, sold_photos):
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = str(Path(sys.executable).with_name("coinmatch"))
    server = subprocess.Popen([binary, "serve", str(sales["sale-1975"]), "--catalogue", f"older={sales['sale-1987']}",
                               "--port", str(port), "--no-verify"], stderr=subprocess.PIPE, text=True)
    try:
        while True:  # up when it answers (the models load first); a server that died says why
            assert server.poll() is None, server.stderr.read()
            try:
                catalogues = httpx.get(f"http://127.0.0.1:{port}/api/catalogues").json()
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert list(catalogues) == ["sale-1975", "older"]
        photo = sold_photos["both"][0]
        answer = httpx.post(f"http://127.0.0.1:{port}/api/identify", files=upload(photo), timeout=None).json()
        assert answer["results"][0]["id"] == f"B-{photo.stem.removesuffix('_b')}"
        assert "inliers" not in answer["results"][0]  # --no-verify: the server's default
    finally:
        server.terminate()
        server.wait()
