"""The command line: parses arguments, calls the package, prints. No logic of its own."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from coinmatch import CoinmatchError
from coinmatch import api
from coinmatch.api import Catalogue, compare

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="coinmatch: find the very coin of a photograph in a catalogue.")
catalog_app = typer.Typer(no_args_is_help=True, help="Build, extend and inspect catalogues.")
app.add_typer(catalog_app, name="catalog")
# soft_wrap: a line is never cut at the terminal's width (a long path stays whole). Whatever comes from the user
# (paths, ids, metadata, messages naming a file) is escaped or passed as Text: '[...]' in a name is not markup.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

BackendOpt = typer.Option("onnx", "--backend", help="Inference runtime: onnx (default) or torch (CUDA too).")
CandidatesOpt = typer.Option(20, "--candidates", min=1,
                             help="Candidates per query scored again (aligned, less their density) and verified "
                                  "with --verify.")
IdColumnOpt = typer.Option("id", "--id-column",
                           help="The queries' column naming each photo's coin: an entry id, or the value of the "
                                "catalogue's own column of that name.")


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _notes(cat) -> None:
    """Why a search is weaker than it could be, said on stderr."""
    for note in cat.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


@catalog_app.command("build")
def catalog_build(
    catalogue: Path = typer.Argument(..., help="Catalogue folder to create (a catalogue there is replaced)."),
    manifest: Path = typer.Argument(..., help="CSV with an 'image' column (paths relative to the CSV)."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Model file (.cm) or builtin:efficientnet_lite0 (the untrained ImageNet model); "
                              "default: the bundled default model, or $COINMATCH_MODEL."),
    backend: str = BackendOpt,
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images instead of stopping."),
    features: bool = typer.Option(True, "--features/--no-features",
                                  help="Store local features for verification (--verify)."),
    index: str = typer.Option("auto", "--index", help="Vector index: auto (by size: exact to 10,000 images, then "
                                                      "HNSW, IVF-PQ past 2 million), flat, hnsw or ivfpq."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes preparing images (default: one a "
                                                                    "core from 200 images; 0: none)."),
    resume: bool = typer.Option(False, "--resume", help="Go on from a stopped build of the same manifest, model "
                                                        "and options."),
    split: bool = typer.Option(False, "--split", help="The images are plates, piles or PDFs: one entry per coin "
                                                      "(also a photo, PDF or folder instead of a manifest)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Build a catalogue: records + vectors + local features for verification."""
    with Catalogue.build(catalogue, manifest, model=model, index=index, features=features, skip_bad=skip_bad,
                         progress=not as_json, backend=backend, split=split, workers=workers, resume=resume) as cat:
        _print_info({**cat.info(), "skipped": cat.skipped}, as_json)


@catalog_app.command("add")
def catalog_add(
    catalogue: Path = typer.Argument(...),
    manifest: Path = typer.Argument(...),
    backend: str = BackendOpt,
    skip_bad: bool = typer.Option(False, "--skip-bad"),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes preparing images (default: one a "
                                                                    "core from 200 images; 0: none)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Append a manifest's entries, embedding only the new images."""
    with Catalogue.open(catalogue, backend=backend) as cat:
        _print_info(cat.add(manifest, skip_bad=skip_bad, progress=not as_json, workers=workers), as_json)


@catalog_app.command("remove")
def catalog_remove(
    catalogue: Path = typer.Argument(...),
    ids: list[str] = typer.Argument(..., help="Entry ids to take out."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Take entries out: records, vectors, local features and index, in one step (an unknown id: nothing)."""
    with Catalogue.open(catalogue) as cat:
        _print_info(cat.remove(*ids), as_json)


@catalog_app.command("info")
def catalog_info(catalogue: Path = typer.Argument(...), as_json: bool = typer.Option(False, "--json")):
    """Describe a catalogue: size, model, calibration."""
    with Catalogue.open(catalogue) as cat:
        _print_info(cat.info(), as_json)


def _print_info(info: dict, as_json: bool) -> None:
    if as_json:
        _emit_json(info)
        return
    table = Table(show_header=False, box=None)
    for key in ("path", "entries", "images", "faces", "dim", "index", "index_setting", "model", "model_source",
                "model_fingerprint", "threshold", "verification_features", "angle_vectors", "created", "updated", "added",
                "removed"):
        if key in info:
            table.add_row(key, Text(str(info[key])))
    out.print(table)
    for s in info.get("skipped", []):
        err.print(f"[yellow]skipped:[/] {escape(str(s))}")


@app.command()
def search(
    catalogue: Path = typer.Argument(...),
    photos: Optional[list[Path]] = typer.Argument(None, help="Query photos (one coin each)."),
    obverse: Optional[Path] = typer.Option(None, "--obverse", help="One coin by both faces: its obverse photo."),
    reverse: Optional[Path] = typer.Option(None, "--reverse", help="... and its reverse photo."),
    top_k: int = typer.Option(5, "--top-k", min=1),
    verify: bool = typer.Option(False, "--verify", help="Re-rank candidates by local-feature geometry."),
    candidates: int = CandidatesOpt,
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per query photo, one per line."),
):
    """Find the catalogue entries that are the coin in each photo."""
    if not photos and not (obverse or reverse):
        raise typer.BadParameter("give query photos, or --obverse and/or --reverse")
    failed = 0
    with Catalogue.open(catalogue, backend=backend) as cat:
        _notes(cat)
        if obverse or reverse:
            _show(cat.search_coin(obverse, reverse, top_k=top_k, verify=verify, candidates=candidates), as_json)
        for photo in photos or []:
            try:
                result = cat.search(photo, top_k=top_k, verify=verify, candidates=candidates)
            except CoinmatchError as exc:
                if as_json:
                    _emit_json({"query": str(photo), "error": str(exc), "results": []})
                else:
                    err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
                failed += 1
                continue
            _show(result, as_json)
    if failed:
        raise typer.Exit(1)  # the others were answered; the exit status says not all could be


def _show(result, as_json: bool) -> None:
    if as_json:
        _emit_json(result.to_dict())
        return
    title = escape(str(result.query))
    if result.decision:
        colour = "green" if result.decision == "match" else "yellow"
        title += f"  [{colour}]{result.decision}[/]"
    out.print(title, style="italic")  # the query on a line of its own: a table's title would wrap a long path
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    aligned = any(m.aligned is not None for m in result.matches)
    if aligned:
        table.add_column("cosine", justify="right")
        table.add_column("aligned", justify="right")
    dense = any(m.density is not None for m in result.matches)
    if dense:
        table.add_column("density", justify="right")
    verified = any(m.inliers is not None for m in result.matches)
    if verified:
        table.add_column("inliers", justify="right")
        table.add_column("verified", justify="right")
    table.add_column("image")
    table.add_column("metadata")
    for i, m in enumerate(result.matches, 1):
        meta = ", ".join(f"{k}={v}" for k, v in m.metadata.items() if v)[:60]
        cells = [str(i), Text(str(m.id)), f"{m.score:.3f}"]
        if aligned:
            cells += [f"{m.cosine:.3f}", f"{m.aligned:.3f}"]
        if dense:
            cells.append(f"{m.density:.3f}")
        if verified:
            cells += [str(m.inliers), f"{m.verified_score:.3f}"]
        table.add_row(*cells, Text(str(m.image)), Text(meta))
    out.print(table)
    for w in result.warnings:
        out.print(f"  [yellow]warning:[/] {escape(str(w))}")


@app.command("eval")
def eval_cmd(
    catalogue: Path = typer.Argument(...),
    queries: Path = typer.Argument(..., help="Manifest of query photos; the id column names each one's coin."),
    id_column: str = IdColumnOpt,
    verify: bool = typer.Option(False, "--verify", help="Also score with local-feature verification."),
    candidates: int = CandidatesOpt,
    form: str = typer.Option("photo", "--form", help="photo, or catalogue-like (grey, rotated, 128 px)."),
    report: Optional[Path] = typer.Option(None, "--out", help="Write plots, CSV and an HTML page here."),
    target_fpr: float = typer.Option(0.01, "--target-fpr"),
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Score a catalogue on real query photos: recall@k, mAP, open-set ROC, plots."""
    with Catalogue.open(catalogue, backend=backend) as cat:
        _notes(cat)
        summary = cat.evaluate(queries, id_column=id_column, verify=verify, candidates=candidates, form=form,
                               target_fpr=target_fpr, report=report, progress=not as_json)
    for w in summary["warnings"]:
        err.print(f"[red]warning:[/] {escape(w)}", highlight=False)
    if as_json:
        _emit_json(summary)
        return
    table = Table(title=escape(f"{queries} against {catalogue}"), show_header=False)
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b:.3f}" for a, b in v.items())
        if k != "warnings":
            table.add_row(k, Text(f"{v:.4f}" if isinstance(v, float) else str(v)))
    out.print(table)


@app.command()
def calibrate(
    catalogue: Path = typer.Argument(...),
    queries: Path = typer.Argument(..., help="Real query photos with known answers (some may have none)."),
    id_column: str = IdColumnOpt,
    target_fpr: float = typer.Option(0.01, "--target-fpr", min=0.0, max=1.0),
    verify: bool = typer.Option(False, "--verify", help="Calibrate the verified score as well."),
    candidates: int = CandidatesOpt,
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Choose the match/no-match threshold for a target false-positive rate and store it in the catalogue."""
    with Catalogue.open(catalogue, backend=backend) as cat:
        _notes(cat)
        calibration = cat.calibrate(queries, id_column=id_column, target_fpr=target_fpr, verify=verify,
                                    candidates=candidates, progress=not as_json)
    if as_json:
        _emit_json(calibration)
    else:
        out.print(f"stored threshold {calibration['threshold']:.4f} ({calibration['mode']}, {calibration['scoring']} "
                  f"score) for a false-positive rate of {target_fpr:.2%} from {calibration['queries']} queries; "
                  f"ROC AUC {calibration['roc_auc']:.3f}")


@app.command("compare")
def compare_cmd(
    photo_a: Path = typer.Argument(...),
    photo_b: Path = typer.Argument(...),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Draw the two coins and their inlier matches."),
    model: Optional[str] = typer.Option(None, "--model",
                                        help="Model file (.cm) for the embedding's score; default: the default model."),
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Are two photos the same coin? Local-feature matching under a geometric transform."""
    result = compare(photo_a, photo_b, model=model, out=out_path, backend=backend)
    if as_json:
        _emit_json(result)
    else:
        aligned = f", aligned {result['aligned']:.3f}" if "aligned" in result else ""
        out.print(f"inliers: {result['inliers']} (tentative matches {result['matches']}), "
                  f"rotation {result['rotation']}, scale {result['scale']}, cosine {result['cosine']:.3f}"
                  f"{aligned}, score {result['score']:.3f}")
        if out_path:
            out.print(f"wrote {escape(str(out_path))}")


@app.command()
def train(
    manifests: list[Path] = typer.Argument(..., help="Training manifests; every row is its own class (one coin)."),
    out_path: Path = typer.Option(..., "--out", help="The model file to write (.cm)."),
    loss: Optional[str] = typer.Option(None, "--loss",
                                       help="whitening (the default: the recipe, fitted in closed form), or a "
                                            "gradient loss: triplet, arcface, subcenter-arcface."),
    backbone: Optional[str] = typer.Option(None, "--backbone",
                                           help="efficientnet_lite0 (default), efficientnet_lite2 or resnet50."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights: a file, 'hub' or 'random'."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Embedding size (whitening 512, the others 128)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (whitening 224, the others 128)."),
    grey: Optional[bool] = typer.Option(None, "--grey/--colour",
                                        help="Colour-blind model (the default): photos and grey scans alike."),
    rotations: Optional[int] = typer.Option(None, "--rotations",
                                            help="Rotation pooling over this many angles (default 16; each costs "
                                                 "one pass of the backbone)."),
    rings: Optional[bool] = typer.Option(None, "--rings/--no-rings",
                                         help="Pool over three concentric rings as well as whole (the default)."),
    shrinkage: Optional[float] = typer.Option(None, "--shrinkage", help="Whitening: shrinkage of the pair covariance."),
    whitening_views: Optional[int] = typer.Option(None, "--whitening-views",
                                                  help="Whitening: augmented views paired with each coin (default 2)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Gradient losses: epochs (default 12)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of the backbone (the head's is 10x)."),
    freeze_blocks: Optional[int] = typer.Option(None, "--freeze-blocks", help="Early stages kept at ImageNet weights."),
    mining: Optional[str] = typer.Option(None, "--mining", help="Triplet mining: semihard, hard or all."),
    margin: Optional[float] = typer.Option(None, "--margin",
                                           help="Loss margin (triplet: cosine, default 0.2; ArcFace: degrees, 28.6)."),
    type_column: Optional[str] = typer.Option(None, "--type-column",
                                              help="Coin type column: negatives of the same type are mined first."),
    val_pairs: Optional[Path] = typer.Option(None, "--val-pairs", help="Real photo pairs scored every epoch."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="The --val-pairs' coin column (coin_id)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N images of each manifest."),
    disk_cache: Optional[bool] = typer.Option(None, "--disk-cache/--no-disk-cache",
                                              help="Keep the prepared training images on disk (COINMATCH_CACHE) so the "
                                                   "next run skips finding the coins (the default)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
    workers: Optional[int] = typer.Option(None, "--workers",
                                          help="Processes that find the coins and augment batches beside this one."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint (gradient losses)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train a model from one photo per coin. With no options: the recipe (see the README)."""
    from coinmatch.training.history import VALIDATION_LABELS

    given = {k: v for k, v in dict(
        loss=loss, backbone=backbone, weights=weights, dim=dim, image_size=image_size, grey=grey, rotations=rotations,
        rings=rings, shrinkage=shrinkage, whitening_views=whitening_views, epochs=epochs, batch_size=batch_size,
        lr=lr, freeze_blocks=freeze_blocks, mining=mining, margin=margin, type_column=type_column,
        val_pairs=None if val_pairs is None else str(val_pairs), id_column=id_column, max_minutes=max_minutes,
        limit=limit, disk_cache=disk_cache, seed=seed, device=device, workers=workers).items() if v is not None}
    summary = api.train(manifests, out_path, progress=not as_json, resume=resume, **given)
    if as_json:
        _emit_json(summary)
        return
    out.print(f"wrote {escape(str(summary['model']))} (best epoch {summary['best_epoch']} of "
              f"{summary['epochs_run']}); history and plots in {escape(str(summary['work_dir']))}; "
              f"{summary['wall_seconds']:.0f} s; {summary['train_images_per_s']:.1f} training images/s")
    before, after = summary["history"][0], summary["history"][-1]
    out.print("; ".join(f"{label} {before[k]:.3f} -> {after[k]:.3f}" for k, label in VALIDATION_LABELS.items()
                        if k in after) + " (the starting network -> the last epoch)")


@app.command("mine-pairs")
def mine_pairs_cmd(
    manifest: Path = typer.Argument(..., help="Photos to search for coins photographed more than once."),
    out_path: Path = typer.Option(..., "--out", help="The CSV of pairs to write (image, coin_id, inliers)."),
    type_column: Optional[str] = typer.Option(None, "--type-column",
                                              help="Compare only photos of one type (denomination, reference...)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model file whose descriptor picks the candidates."),
    min_inliers: int = typer.Option(60, "--min-inliers", help="Verification inliers that make a pair."),
    shortlist: int = typer.Option(20, "--shortlist", help="Candidates verified for each photo."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Find the photos that show one coin twice (verified), as a CSV of pairs: for train --val-pairs, or to check."""
    summary = api.mine_pairs(manifest, out_path, type_column, model, shortlist, min_inliers, progress=not as_json)
    if as_json:
        _emit_json(summary)
    else:
        out.print(f"wrote {summary['pairs']} same-coin photo pairs to {escape(str(out_path))} "
                  f"({summary['seconds']:.0f} s)")


@app.command("augment-grid")
def augment_grid(
    photo: Path = typer.Argument(...),
    out_path: Path = typer.Option(..., "--out", help="PNG of the original and its augmented views."),
    n: int = typer.Option(24, "--n", min=1, help="The original and n-1 augmented views."),
    size: int = typer.Option(160, "--size", min=16, help="Side of each view in pixels."),
    seed: int = typer.Option(0, "--seed"),
):
    """Write a grid of augmented views of one coin, to check the augmentations by eye."""
    api.augment_grid(photo, out_path, n=n, size=size, seed=seed)
    out.print(f"wrote {escape(str(out_path))}")


@app.command()
def embed(
    manifest: Path = typer.Argument(...),
    out_path: Path = typer.Option(..., "--out", help="Where to write the vectors (.npy); ids go beside it."),
    model: Optional[str] = typer.Option(None, "--model"),
    backend: str = BackendOpt,
):
    """Embed every image of a manifest: vectors.npy plus vectors.ids.txt (one 'id<TAB>image' per row)."""
    n, dim = api.embed(manifest, out_path, model=model, backend=backend, progress=True)
    err.print(f"wrote {n} vectors of {dim} dimensions to {escape(str(out_path))}")


from coinmatch import cli_collection  # noqa: E402,F401 (registers match and serve on app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app()
    except CoinmatchError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
