"""The screenshots in docs/ (and the README's): the web app on the demo catalogue, in headless Chromium.

    .venv/bin/python docs/screenshots.py        # about a minute; needs /usr/bin/chromium (Debian) and Playwright

Builds the demo catalogue with the default model in a temporary folder, serves it, identifies a demo query photo,
opens its best match in Compare, matches the 24 demo queries as a collection and browses the catalogue.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import browser_missing, chromium, served  # noqa: E402

from coinmatch import Catalogue  # noqa: E402

DEMO = ROOT / "demo" / "data"
OUT = ROOT / "docs" / "screenshots"


def main() -> None:
    why = browser_missing()
    if why:
        sys.exit(f"cannot take screenshots: {why}")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        Catalogue.build(Path(tmp) / "demo", DEMO / "catalogue.csv").close()
        with served({"demo": Path(tmp) / "demo"}) as url, chromium() as page:
            page.goto(url + "/identify")
            page.set_input_files("#file", str(DEMO / "queries" / "1e-4197-006_b.jpg"))
            page.click("#identify-button")
            page.wait_for_selector(".match-card")
            page.screenshot(path=OUT / "identify.jpg", type="jpeg", quality=80, full_page=True)
            page.locator(".match-card a.button").first.click()
            page.wait_for_selector(".scores")
            page.screenshot(path=OUT / "compare.jpg", type="jpeg", quality=80, full_page=True)
            page.goto(url + "/collection")
            page.set_input_files("#files", sorted(str(p) for p in (DEMO / "queries").glob("*.jpg")))
            page.click("#collection-button")
            page.wait_for_selector("#results")
            page.screenshot(path=OUT / "collection.jpg", type="jpeg", quality=80, full_page=True)
            with page.context.expect_page() as report:
                page.click("#export-html")
            report.value.wait_for_load_state()
            report.value.screenshot(path=OUT / "report.jpg", type="jpeg", quality=80)
            page.goto(url + "/catalogue/demo?q=1e")
            page.screenshot(path=OUT / "catalogue.jpg", type="jpeg", quality=80, full_page=True)
            page.goto(url + "/docs")
            page.wait_for_selector(".swagger-ui .opblock")
            page.screenshot(path=OUT / "api.jpg", type="jpeg", quality=80)
    for p in sorted(OUT.glob("*.jpg")):
        print(f"wrote {p.relative_to(ROOT)} ({p.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
