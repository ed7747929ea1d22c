"""The web app and collection matching, measured (not a test: it prints its figures and writes them to
benchmarks/results/web.txt and .json).

    .venv/bin/python benchmarks/web.py            # about 10 minutes on 2 cores, the default model

1. **The same coin against the others** (why a catalogue that is not calibrated calls an entry the coin at a
   verified score of ``DEFAULT_VERIFIED_THRESHOLD``): the real euro pairs (benchmarks/common.py), each of the 84
   queries verified against its top 20; the true entry's inliers and verified score against the best wrong
   candidate's, as photographed and catalogue-like, and what each threshold of either would admit.
2. **/api/identify response times** on the demo catalogue (60 photos), `coinmatch serve` in its own process:
   50 requests one after another, then 8 clients at once (7 requests each), with and without verification.
3. **A collection of 100 photos** (the 84 pair queries and 16 euro singles whose coins are not catalogued) against
   the pairs catalogue (955 entries): wall time from the upload to the provenance report, and its decisions.
"""

from __future__ import annotations

import csv
import io
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import EURO, ROOT, WORK, format_table, pairs_manifests, save_results  # noqa: E402

from coinmatch import Catalogue  # noqa: E402
from coinmatch.catalog.build import build_catalogue  # noqa: E402
from coinmatch.catalog.store import is_catalogue  # noqa: E402
from coinmatch.collection import DEFAULT_VERIFIED_THRESHOLD  # noqa: E402
from coinmatch.evaluation.protocol import load_query_images, read_queries  # noqa: E402

THRESHOLDS = {"inliers": (10, 20, 30, 40, 60, 80), "verified_score": (1.1, 1.15, 1.2, 1.25, 1.3, 1.4)}


def catalogue(root: Path, manifest: Path) -> Path:
    """A default-model catalogue, built once and reused (the local-features benchmark builds the same one)."""
    if not is_catalogue(root):
        t = time.perf_counter()
        build_catalogue(root, manifest, progress=True)
        print(f"built {root.name} in {time.perf_counter() - t:.0f} s")
    return root


def separation(cat_root: Path, queries_csv: Path) -> list[dict]:
    queries = read_queries(queries_csv, "coin_id")
    rows = []
    with Catalogue.open(cat_root) as cat:
        for form in ("photo", "catalogue-like"):
            true = {"inliers": [], "verified_score": []}
            wrong = {"inliers": [], "verified_score": []}
            for q, image in zip(queries, load_query_images(queries, form)):
                result = cat.search(image, top_k=20, verify=True, candidates=20)
                for key in true:
                    found = [getattr(m, key) for m in result.matches if m.id == q.true_id]
                    true[key].append(found[0] if found else 0)  # not shortlisted: no evidence at all
                    wrong[key].append(max(getattr(m, key) for m in result.matches if m.id != q.true_id))
            for key in true:
                t, w = np.array(true[key]), np.array(wrong[key])
                row = {"form": form, "by": key, "queries": len(t), "true_min": float(t.min()),
                       "true_p5": float(np.percentile(t, 5)), "true_median": float(np.median(t)),
                       "wrong_median": float(np.median(w)), "wrong_p99": float(np.percentile(w, 99)),
                       "wrong_max": float(w.max()),
                       # per threshold: the true entries that pass, and the queries where a wrong entry passes
                       "thresholds": {str(x): [float(np.mean(t >= x)), int(np.sum(w >= x))] for x in THRESHOLDS[key]}}
                rows.append(row)
    return rows


def serve(catalogue_dir: Path, port: int, *flags: str) -> subprocess.Popen:
    binary = str(Path(sys.executable).with_name("coinmatch"))
    proc = subprocess.Popen([binary, "serve", str(catalogue_dir), "--port", str(port), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode())
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/catalogues")
            return proc
        except httpx.TransportError:
            time.sleep(0.5)


def identify_times(url: str, photos: list[Path], verify: bool) -> list[dict]:
    def one(photo: Path) -> float:
        t = time.perf_counter()
        r = httpx.post(f"{url}/api/identify", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
                       data={"verify": str(verify).lower()}, timeout=None)
        r.raise_for_status()
        return (time.perf_counter() - t) * 1000

    one(photos[0])  # the first request pays for nothing the others do not
    rows = []
    for clients, n in ((1, 50), (8, 56)):
        batch = [photos[i % len(photos)] for i in range(n)]
        t = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            times = list(pool.map(one, batch))
        wall = time.perf_counter() - t
        rows.append({"clients": clients, "verify": verify, "requests": n, "median_ms": statistics.median(times),
                     "p95_ms": float(np.percentile(times, 95)), "requests_per_s": n / wall})
    return rows


def collection(url: str, photos: list[Path], truth: dict[str, str]) -> dict:
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    t = time.perf_counter()
    job = httpx.post(f"{url}/api/collections", files=files, data={"verify": "true"}, timeout=None).json()["id"]
    while httpx.get(f"{url}/api/collections/{job}").json()["status"] in ("queued", "running"):
        time.sleep(0.5)
    report = httpx.get(f"{url}/collection/{job}/report.html", timeout=None)
    wall = time.perf_counter() - t
    rows = list(csv.DictReader(io.StringIO(httpx.get(f"{url}/collection/{job}/report.csv").text)))
    right = sum((r["decision"] == "match" and r["match"] == truth.get(r["coin"])) or
                (r["decision"] == "no_match" and r["coin"] not in truth) for r in rows)
    links = [(r["coin"], link.split(":", 1)[1]) for r in rows for link in r["chain"].split(" > ") if link]
    return {"photos": len(photos), "seconds": wall, "photos_per_s": len(photos) / wall,
            "chain_links": len(links), "false_links": sum(entry != truth.get(coin) for coin, entry in links),
            "matched": sum(r["decision"] == "match" for r in rows), "right": right,
            "false_matches": sum(r["decision"] == "match" and r["match"] != truth.get(r["coin"]) for r in rows),
            "report_kb": len(report.content) // 1024}


def main() -> None:
    cat_csv, queries_csv = pairs_manifests()
    pairs_cat = catalogue(WORK / "catalogue-verifiers-default", cat_csv)
    demo_cat = catalogue(WORK / "web-demo-default", ROOT / "demo" / "data" / "catalogue.csv")

    found = separation(pairs_cat, queries_csv)
    cols = [("form", "form", "<15"), ("by", "by", "<15"), ("true_min", "true min", ">8.2f"),
            ("true_p5", "true p5", ">8.2f"), ("true_median", "true median", ">11.2f"),
            ("wrong_median", "wrong median", ">12.2f"), ("wrong_p99", "wrong p99", ">9.2f"),
            ("wrong_max", "wrong max", ">9.2f")]
    text = ("1. The true entry against the best wrong candidate (euro pairs, 84 queries, top 20 verified)\n"
            + format_table(found, cols) + "\n\nthreshold: share of the true entries that pass / queries where a "
            "wrong entry passes\n" + "\n".join(
                f"{r['form']:<15} {r['by']:<15} " + "  ".join(f"{x}: {kept:.3f}/{n}" for x, (kept, n) in
                                                             r["thresholds"].items()) for r in found)
            + f"\n(a catalogue not calibrated: verified score >= {DEFAULT_VERIFIED_THRESHOLD})\n")
    print(text)

    demo_photos = sorted((ROOT / "demo" / "data" / "queries").glob("*.jpg"))
    timings = []
    server = serve(demo_cat, 8765)
    try:
        for verify in (False, True):
            timings += identify_times("http://127.0.0.1:8765", demo_photos, verify)
    finally:
        server.terminate()
        server.wait()
    cols = [("clients", "clients", ">7"), ("verify", "verify", ">6"), ("requests", "requests", ">8"),
            ("median_ms", "median ms", ">9.0f"), ("p95_ms", "p95 ms", ">7.0f"), ("requests_per_s", "req/s", ">6.2f")]
    part2 = "2. POST /api/identify on the demo catalogue (60 entries), default model\n" + format_table(timings, cols)
    print(part2)

    queries = list(csv.DictReader(open(queries_csv, encoding="utf-8")))
    singles = sorted((EURO / "singles").rglob("*.jpg"))[:16]
    photos = [Path(q["image"]) for q in queries] + singles
    truth = {Path(q["image"]).stem: q["coin_id"] for q in queries}
    server = serve(pairs_cat, 8766)
    try:
        coll = collection("http://127.0.0.1:8766", photos, truth)
    finally:
        server.terminate()
        server.wait()
    part3 = (f"3. A collection of {coll['photos']} photos against the pairs catalogue (955 entries), verified: "
             f"{coll['seconds']:.0f} s from the upload to the report ({coll['photos_per_s']:.2f} photos/s); "
             f"{coll['matched']} matched, {coll['right']} of {coll['photos']} decisions right, "
             f"{coll['false_matches']} false matches; {coll['chain_links']} chain links, {coll['false_links']} to "
             f"another coin; report {coll['report_kb']} KB")
    print(part3)
    save_results("web", [{"part": "separation", **r} for r in found] + [{"part": "identify", **r} for r in timings]
                 + [{"part": "collection", **coll}], "\n\n".join([text, part2, part3]))


if __name__ == "__main__":
    main()
