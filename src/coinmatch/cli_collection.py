"""The command line's collection verbs: ``match`` (a whole collection, its provenance report) and ``serve`` (the
web app). Registered on :data:`coinmatch.cli.app`; like the rest of the CLI, no logic of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from tqdm import tqdm

from coinmatch import CoinmatchError
from coinmatch.cli import _emit_json, app, err, out

CatalogueOpt = typer.Option(None, "--catalogue",
                            help="Another catalogue, as NAME=DIR (repeat it): a coin is searched in every one.")


def named_catalogues(first: Path | None, more: list[str] | None) -> dict[str, Path]:
    """{name: folder} from a first catalogue folder (named after it) and NAME=DIR options."""
    found: dict[str, Path] = {}
    if first is not None:
        found[first.resolve().name or "catalogue"] = first
    for spec in more or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise CoinmatchError(f"--catalogue {spec!r}: write NAME=DIR")
        if name.strip() in found:
            raise CoinmatchError(f"--catalogue {spec!r}: the name {name.strip()!r} is used twice")
        found[name.strip()] = Path(folder.strip())
    if not found:
        raise CoinmatchError("give a catalogue folder, or --catalogue NAME=DIR")
    return found


@app.command("match")
def match_cmd(
    catalogue: Path = typer.Argument(..., help="The catalogue to search."),
    collection: Path = typer.Argument(..., help="A folder of photos, a zip of them, or a manifest (CSV)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for report.csv and report.html."),
    more: Optional[list[str]] = CatalogueOpt,
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify by local features (the evidence)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Matches kept per coin and catalogue."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Match a whole collection: each coin's best match, decision and provenance chain, as CSV and a printable
    HTML report. NAME_obv.jpg and NAME_rev.jpg are one coin by both faces."""
    from coinmatch.api import Catalogue
    from coinmatch.collection import match_collection, read_collection, searched_at
    from coinmatch.report import write_report

    coins = read_collection(collection)
    folders = named_catalogues(catalogue, more)
    catalogues = {name: Catalogue.open(folder) for name, folder in folders.items()}
    try:
        searched = searched_at()
        bar = tqdm(total=len(coins), desc="matching", unit="coin", disable=as_json)
        results = match_collection(catalogues, coins, top_k=top_k, verify=verify,
                                   on_progress=lambda done, total: bar.update(1))
        bar.close()
        paths = write_report(results, catalogues, out_dir,
                             {"verify": verify, "top_k": top_k, "catalogues": ", ".join(catalogues)}, searched)
    finally:
        for cat in catalogues.values():
            cat.close()
    summary = {"coins": len(results), "matched": sum(r.decision == "match" for r in results),
               "unreadable": sum(r.error is not None for r in results), "csv": str(paths["csv"]),
               "html": str(paths["html"])}
    if as_json:
        _emit_json(summary)
        return
    out.print(f"{summary['coins']} coins, {summary['matched']} matched, {summary['unreadable']} unreadable; "
              f"wrote {escape(summary['csv'])} and {escape(summary['html'])}")
    for r in results:
        if r.error:
            err.print(f"[yellow]unreadable:[/] {escape(r.error)}", highlight=False)


@app.command("link")
def link_cmd(
    catalogue: Path = typer.Argument(..., help="The catalogue whose entries are linked (a sale archive)."),
    with_: Optional[list[Path]] = typer.Option(None, "--with", help="Another catalogue to link with (repeat it)."),
    out_path: Path = typer.Option(..., "--out", help="The chains as CSV: group, catalogue, id, image, date, score, "
                                                      "inliers, then the records' columns."),
    report: Optional[Path] = typer.Option(None, "--report", help="An HTML page of the chains with their evidence."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="The chains as JSON."),
    neighbours: int = typer.Option(10, "--neighbours", min=1, help="Nearest images of each image verified."),
    threshold: Optional[float] = typer.Option(None, "--threshold",
                                              help="Verified score of a link (default: the catalogue's calibrated "
                                                   "one, else 1.2)."),
):
    """Find the same coin sold more than once: entries grouped one group per physical coin, each group ordered by
    sale date (its provenance chain)."""
    from coinmatch.api import Catalogue
    from coinmatch.link import link_catalogues, write_chains

    folders = {catalogue.resolve().name or "catalogue": catalogue}
    for other in with_ or []:
        name = other.resolve().name or "other"
        while name in folders:
            name += "'"
        folders[name] = other
    catalogues = {name: Catalogue.open(folder) for name, folder in folders.items()}
    try:
        total = sum(len(c) for c in catalogues.values())
        bar = tqdm(total=total, desc="linking", unit="entry")
        linked = link_catalogues(catalogues, neighbours, threshold,
                                 on_progress=lambda done, _: bar.update(done - bar.n))
        bar.close()
        write_chains(linked, catalogues, out_path, report, json_path)
    finally:
        for cat in catalogues.values():
            cat.close()
    joined = sum(len(g) for g in linked.groups)
    out.print(f"{len(linked.groups)} coins appear more than once ({joined} of {linked.entries} entries), links at a "
              f"verified score of {linked.threshold:.3f}; {linked.pairs_scored} pairs scored in {linked.seconds:.0f} s "
              f"({linked.entries_per_s:.1f} entries/s); wrote {escape(str(out_path))}")


@app.command("dedup")
def dedup_cmd(
    source: Path = typer.Argument(..., help="A manifest (CSV) or a folder of photos."),
    out_path: Path = typer.Option(..., "--out", help="groups.csv: group, image, kind (exact or near), one row per "
                                                      "photo that has a duplicate."),
    clean: Optional[Path] = typer.Option(None, "--clean", help="A manifest keeping one photo of each group (the "
                                                                "largest) and every photo without a duplicate."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="A folder for a contact sheet (PNG) of each group."),
    model: Optional[str] = typer.Option(None, "--model", help="The model whose vectors propose candidates."),
):
    """Find exact and near duplicates (one photograph re-compressed, resized, turned, cropped or grey). Deletes
    nothing."""
    from coinmatch.dedup import find_duplicates, write_outputs

    photos = dedup_inputs(source)
    bar = tqdm(total=len(photos), desc="examining", unit="img")
    dups = find_duplicates(photos, model=model, on_progress=lambda done, _: bar.update(done - bar.n))
    bar.close()
    write_outputs(dups, source, out_path, clean, sheet)
    out.print(f"{len(dups.groups)} groups of duplicates ({sum(len(g) for g in dups.groups)} of {len(dups.photos)} "
              f"photos; {len(dups.dropped())} left out of a clean set); wrote {escape(str(out_path))}")
    for s in dups.skipped:
        err.print(f"[yellow]skipped:[/] {escape(s)}", highlight=False)


def dedup_inputs(source: Path) -> list[tuple[str, Path]]:
    """(name, path) of every photo of a manifest (its paths as written) or a folder (relative to it)."""
    from coinmatch.catalog.manifest import read_manifest
    from coinmatch.collection import image_files

    if source.is_dir():
        return [(p.relative_to(source).as_posix(), p) for p in image_files(source)]
    return [(f.relpath, f.path) for e in read_manifest(source, per_row=True) for f in e.faces]


@app.command("split")
def split_cmd(
    source: Path = typer.Argument(..., help="A photo, a scanned plate, a PDF, a folder of them, or a manifest."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the coin crops (PNG, transparent outside the coin)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="The manifest to write (default OUT/coins.csv)."),
):
    """Cut every coin out of plates, piles and scanned catalogues, with its position and the caption under it."""
    from coinmatch.split import split

    written, rows = split(source, out_dir, manifest)
    lots = sum(1 for r in rows if r["lot"])
    out.print(f"{len(rows)} coins from {len({(r['source'], r['page']) for r in rows})} images or pages; "
              f"{lots} lot numbers read; wrote {escape(str(written))}")


@app.command()
def serve(
    catalogue: Optional[Path] = typer.Argument(None, help="The catalogue to serve (named after its folder)."),
    more: Optional[list[str]] = CatalogueOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every network)."),
    port: int = typer.Option(8000, "--port"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify searches by default."),
    top_k: int = typer.Option(5, "--top-k", min=1),
):
    """The web app: identify a coin in a browser, see the evidence, match a collection, browse the catalogue."""
    import uvicorn

    from coinmatch.web.app import create_app
    from coinmatch.web.service import Service

    service = Service(named_catalogues(catalogue, more), verify=verify, top_k=top_k)
    err.print("loading the models...")
    service.warm()
    err.print(f"coinmatch serving {', '.join(escape(n) for n in service.catalogues)} at http://{host}:{port}/ "
              f"(API: http://{host}:{port}/docs)")
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning")
    finally:
        service.close()
