"""The pages in a real browser (Debian's headless Chromium, driven by Playwright) against the app served on
localhost: identify, compare, a collection with both exports, catalogue search and add, a bad upload."""

from __future__ import annotations

import csv
import shutil

import pytest

from browser import browser_missing, chromium, served

why = browser_missing()
pytestmark = pytest.mark.skipif(why is not None, reason=f"browser tests skipped: {why}")


@pytest.fixture(scope="module")
def site(sales, tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    copies = {name: root / name for name in sales}
    for name, path in sales.items():
        shutil.copytree(path, copies[name])
    with served(copies) as url:
        yield url


@pytest.fixture()
def page(site):
    with chromium() as page:
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((site, "data:")) else None)
        page.base = site
        yield page
        assert outside == [], f"the page called out: {outside}"


def test_identify_then_compare(page, sold_photos):
    photo = sold_photos["both"][2]
    page.goto(page.base + "/identify")
    page.set_input_files("#file", str(photo))
    page.click("#identify-button")
    page.wait_for_selector(".match-card")
    cards = page.locator(".match-card")
    assert cards.count() == 5
    first = cards.first
    assert first.locator("h3 a").inner_text() == photo.stem.removesuffix("_b")
    assert "Example Auctions" in first.inner_text() and "12 May 1987" in first.inner_text()
    assert int(first.locator(".inliers").inner_text()) >= 30
    assert page.locator("img.outlined").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator("#decision").inner_text() == "match by the default threshold"  # not calibrated: the default rule, said
    assert "not calibrated" in page.locator(".verdict").inner_text()
    first.locator("a.button").click()
    page.wait_for_selector("#overlay")
    for img in page.locator("main img").all():
        assert img.evaluate("img => img.complete && img.naturalWidth > 0"), img.get_attribute("src")
    top = page.locator("#overlay-top")
    page.locator("#blend").fill("100")
    assert top.evaluate("e => e.style.opacity") == "1"
    page.click("#toggle")
    assert top.evaluate("e => e.style.opacity") == "0"
    assert "inliers" in page.locator(".scores").inner_text()


def test_a_bad_upload_says_why_in_the_page(page, broken_files):
    page.goto(page.base + "/identify")
    page.set_input_files("#file", str(broken_files["truncated"]))
    page.click("#identify-button")
    alert = page.wait_for_selector("[role=alert]")
    assert "truncated.jpg" in alert.inner_text() and "Traceback" not in page.content()
    assert page.locator("#identify-button").is_enabled()  # the form is back, ready for another photo


def test_a_collection_with_both_exports(page, sold_photos, tmp_path):
    photos = sold_photos["both"][:2] + sold_photos["none"][:2]
    page.goto(page.base + "/collection")
    page.set_input_files("#files", [str(p) for p in photos])
    page.click("#collection-button")
    page.wait_for_selector("#results")  # the page polls until the job is done, then shows the table
    rows = page.locator("#results tbody tr")
    assert rows.count() == 4
    assert page.locator("#results .decision.match").count() == 2
    assert "1975" in rows.first.inner_text() and "12 May 1987" in rows.first.inner_text()
    with page.expect_download() as download:
        page.click("#export-csv")
    saved = tmp_path / "report.csv"
    download.value.save_as(saved)
    exported = list(csv.DictReader(open(saved, encoding="utf-8")))
    assert [r["decision"] for r in exported] == ["match", "match", "no_match", "no_match"]
    with page.context.expect_page() as report:
        page.click("#export-html")
    report.value.wait_for_load_state()
    assert "Provenance chain" in report.value.content() and report.value.locator("section.coin").count() == 4
    page.click("#only-matches")
    assert page.locator("#results tbody tr").count() == 2
    page.locator("#results tbody tr a").first.click()  # a row opens Compare
    page.wait_for_selector(".scores")
    assert "inliers" in page.locator(".scores").inner_text()


def test_catalogue_search_and_add(page, sold_photos):
    page.goto(page.base + "/catalogue/sale-1987")
    assert page.locator("#entries li").count() == 24
    page.fill("#q", "lot 10")  # "lot" is a column, not a value, and every word must be found: none
    with page.expect_navigation():
        page.press("#q", "Enter")
    assert page.locator("#entries li").count() == 0 and "0 entries" in page.locator("#count").inner_text()
    page.fill("#q", "example 105")  # any case, in any column: the auction house and the lot number
    with page.expect_navigation():
        page.press("#q", "Enter")
    assert page.locator("#entries li").count() == 1 and "105" in page.locator("#entries li").inner_text()
    page.click("#add-link")
    page.fill("#entry-id", "ADDED-1")
    page.set_input_files("#entry-image", str(sold_photos["none"][2]))
    page.fill("input[data-column=auction]", "Added in the browser")
    page.click("#add-button")
    page.wait_for_selector(".record")
    assert "Added in the browser" in page.locator(".record").inner_text()
    page.goto(page.base + "/identify")
    page.set_input_files("#file", str(sold_photos["none"][2]))
    page.click("#identify-button")
    page.wait_for_selector(".match-card")
    assert page.locator(".match-card h3 a").first.inner_text() == "ADDED-1"  # searchable at once
