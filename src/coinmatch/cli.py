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

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="coinmatch: find the very coin of a photograph in a catalogue.")
catalog_app = typer.Typer(no_args_is_help=True, help="Build, extend and inspect catalogues.")
app.add_typer(catalog_app, name="catalog")
# soft_wrap: a line is never cut at the terminal's width (a long path stays whole). Whatever comes from the user
# (paths, ids, metadata, messages naming a file) is escaped or passed as Text: '[...]' in a name is not markup.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

BackendOpt = typer.Option("onnx", "--backend", help="Inference runtime: onnx (default) or torch.")
AlignOpt = typer.Option(True, "--align/--no-align",
                        help="Score the top candidates angle by angle too (a model of several angles, a catalogue "
                             "built with it): (cosine + aligned cosine) / 2.")
DensityOpt = typer.Option(True, "--density/--no-density",
                          help="Take half of each top candidate's local density off its score: the mean score of "
                               "its 10 nearest other catalogue entries (hubness reduction).")
CellsOpt = typer.Option(True, "--cells/--no-cells",
                        help="Add the cell score to the top candidates' (a model with cell descriptors, a catalogue "
                             "built with it): the mean cosine of the two coins' cells, the query at its best angle.")
CandidatesOpt = typer.Option(20, "--candidates", min=1,
                             help="Candidates per query scored again: aligned, less their density, and verified "
                                  "with --verify.")


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


@catalog_app.command("build")
def catalog_build(
    catalogue: Path = typer.Argument(..., help="Catalogue folder to create (a catalogue there is replaced)."),
    manifest: Path = typer.Argument(..., help="CSV with an 'image' column (paths relative to the CSV)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model file (.cm) or builtin:<backbone>."),
    backend: str = BackendOpt,
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images instead of stopping."),
    verify_features: bool = typer.Option(True, "--features/--no-features",
                                         help="Store local features for verification."),
    index: str = typer.Option("Flat", "--index", help="faiss index type: Flat (exact) or HNSW32 (millions)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Build a catalogue: records + vectors (+ local features for verification)."""
    from coinmatch.catalog.build import build_catalogue

    info = build_catalogue(catalogue, manifest, model=model, backend=backend, skip_bad=skip_bad,
                           progress=not as_json, index_factory=index, features=_feature_fn(verify_features))
    _print_info(info, as_json)


@catalog_app.command("add")
def catalog_add(
    catalogue: Path = typer.Argument(...),
    manifest: Path = typer.Argument(...),
    backend: str = BackendOpt,
    skip_bad: bool = typer.Option(False, "--skip-bad"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Append a manifest's entries, embedding only the new images."""
    from coinmatch.catalog.build import add_to_catalogue
    from coinmatch.catalog.store import Catalogue

    with Catalogue.open(catalogue) as cat:
        with_features = cat.info()["verification_features"] > 0 or len(cat) == 0
    info = add_to_catalogue(catalogue, manifest, backend=backend, skip_bad=skip_bad, progress=not as_json,
                            features=_feature_fn(with_features))
    _print_info(info, as_json)


@catalog_app.command("info")
def catalog_info(catalogue: Path = typer.Argument(...), as_json: bool = typer.Option(False, "--json")):
    """Describe a catalogue: size, model, calibration."""
    from coinmatch.catalog.store import Catalogue

    with Catalogue.open(catalogue) as cat:
        _print_info(cat.info(), as_json)


def _feature_fn(enabled: bool):
    if not enabled:
        return None
    from coinmatch.verify import extract_features_blob

    return extract_features_blob


def _print_info(info: dict, as_json: bool) -> None:
    if as_json:
        _emit_json(info)
        return
    table = Table(show_header=False, box=None)
    for key in ("path", "entries", "images", "faces", "dim", "index", "model_source", "model_fingerprint",
                "threshold", "verification_features", "angle_vectors", "created", "updated", "added"):
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
    align: bool = AlignOpt,
    density: bool = DensityOpt,
    cells: bool = CellsOpt,
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per query photo, one per line."),
):
    """Find the catalogue entries that are the coin in each photo."""
    if not photos and not (obverse or reverse):
        raise typer.BadParameter("give query photos, or --obverse and/or --reverse")
    searcher = _open_searcher(catalogue, backend, align, density, cells)
    try:
        if obverse or reverse:
            from coinmatch.prepare import prepare_photo

            faces = {"obverse": prepare_photo(obverse) if obverse else None,
                     "reverse": prepare_photo(reverse) if reverse else None}
            result = searcher.search_faces(faces, top_k=top_k, verify=verify, candidates=candidates)
            if as_json:
                _emit_json(result.to_json())
            else:
                _print_result(result)
        failed = 0
        for photo in photos or []:
            try:
                result = searcher.search([photo], top_k=top_k, verify=verify, candidates=candidates)[0]
            except CoinmatchError as exc:
                if as_json:
                    _emit_json({"query": str(photo), "error": str(exc), "results": []})
                else:
                    err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
                failed += 1
                continue
            if as_json:
                _emit_json(result.to_json())
            else:
                _print_result(result)
    finally:
        searcher.close()
    if failed:
        raise typer.Exit(1)  # the others were answered; the exit status says not all could be


def _open_searcher(catalogue: Path, backend: str, align: bool, density: bool, cells: bool = True):
    """A searcher, its notes (why it cannot align, a calibration of another score) said on stderr."""
    from coinmatch.search import Searcher

    searcher = Searcher(catalogue, backend=backend, align=align, density=density, cells=cells)
    for note in searcher.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    return searcher


def _print_result(result) -> None:
    title = escape(str(result.query))
    if result.decision:
        colour = "green" if result.decision == "match" else "yellow"
        title += f"  [{colour}]{result.decision}[/]"
    out.print(title, style="italic")  # the query on a line of its own: a table's title would wrap a long path
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    aligned = any(m.aligned is not None for m in result.results)
    if aligned:
        table.add_column("cosine", justify="right")
        table.add_column("aligned", justify="right")
    dense = any(m.density is not None for m in result.results)
    if dense:
        table.add_column("density", justify="right")
    verified = any(m.inliers is not None for m in result.results)
    if verified:
        table.add_column("inliers", justify="right")
        table.add_column("verified", justify="right")
    table.add_column("image")
    table.add_column("metadata")
    for i, m in enumerate(result.results, 1):
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


def _evaluate(catalogue: Path, queries: Path, id_column: str, verify: bool, candidates: int, form: str,
              backend: str, keep_crops: bool, progress: bool, align: bool, density: bool, cells: bool = True):
    from coinmatch.evaluation.protocol import load_query_images, read_queries
    from coinmatch.evaluation.run import evaluate

    searcher = _open_searcher(catalogue, backend, align, density, cells)
    qs = read_queries(queries, id_column)
    images = load_query_images(qs, form)
    runs = {"embedding": evaluate(searcher, qs, images, verify=False, candidates=candidates, keep_crops=keep_crops,
                                  progress=progress)}
    if verify:
        runs["verified"] = evaluate(searcher, qs, images, verify=True, candidates=candidates, keep_crops=keep_crops,
                                    progress=progress)
    return searcher, runs


@app.command("eval")
def eval_cmd(
    catalogue: Path = typer.Argument(...),
    queries: Path = typer.Argument(..., help="Manifest of query photos; the id column names the true entry."),
    id_column: str = typer.Option("id", "--id-column"),
    top_k: int = typer.Option(10, "--top-k", help="Matches listed per query in the report."),
    verify: bool = typer.Option(False, "--verify", help="Also score with local-feature verification."),
    candidates: int = CandidatesOpt,
    align: bool = AlignOpt,
    density: bool = DensityOpt,
    cells: bool = CellsOpt,
    form: str = typer.Option("photo", "--form", help="photo, or catalogue-like (grey, rotated, 128 px)."),
    report: Optional[Path] = typer.Option(None, "--out", help="Write plots, CSV and an HTML page here."),
    target_fpr: float = typer.Option(0.01, "--target-fpr"),
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Score a catalogue on real query photos: recall@k, mAP, open-set ROC, plots."""
    from coinmatch.evaluation.report import write_report

    searcher, runs = _evaluate(catalogue, queries, id_column, verify, candidates, form, backend,
                               keep_crops=report is not None, progress=not as_json, align=align,
                               density=density, cells=cells)
    final = runs["verified" if verify else "embedding"]
    summary = final.summary(target_fpr)
    summary["form"] = form
    summary["scoring"] = searcher.scoring
    if verify:
        summary["without_verification"] = {k: v for k, v in runs["embedding"].summary(target_fpr).items()
                                            if k in ("recall@1", "recall@5", "map", "roc_auc", "tpr@fpr=0.01",
                                                     "eer", "ms_per_query")}
    if report is not None:
        page = write_report(final, {k: v for k, v in summary.items() if not isinstance(v, dict)},
                            searcher.catalogue.root, report, title=f"coinmatch evaluation: {queries}")
        summary["report"] = str(page)
    searcher.close()
    if as_json:
        _emit_json(summary)
        return
    table = Table(title=escape(f"{queries} against {catalogue}"), show_header=False)
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b:.3f}" for a, b in v.items())
        table.add_row(k, Text(f"{v:.4f}" if isinstance(v, float) else str(v)))
    out.print(table)


@app.command()
def calibrate(
    catalogue: Path = typer.Argument(...),
    queries: Path = typer.Argument(..., help="Real query photos with known answers (some may have none)."),
    id_column: str = typer.Option("id", "--id-column"),
    target_fpr: float = typer.Option(0.01, "--target-fpr", min=0.0, max=1.0),
    verify: bool = typer.Option(False, "--verify", help="Calibrate the verified score as well."),
    candidates: int = CandidatesOpt,
    align: bool = AlignOpt,
    density: bool = DensityOpt,
    cells: bool = CellsOpt,
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Choose the match/no-match threshold for a target false-positive rate and store it in the catalogue."""
    from coinmatch.evaluation.calibrate import store_calibration

    searcher, runs = _evaluate(catalogue, queries, id_column, verify, candidates, "photo", backend, False,
                               progress=not as_json, align=align,
                               density=density, cells=cells)
    final = runs["verified" if verify else "embedding"]
    calibration = store_calibration(searcher, final, target_fpr, embedding_ev=runs["embedding"])
    searcher.close()
    if as_json:
        _emit_json(calibration)
    else:
        out.print(f"stored threshold {calibration['threshold']:.4f} ({calibration['mode']}, {calibration['scoring']} "
                  f"score) for a false-positive rate of {target_fpr:.2%} from {calibration['queries']} queries; "
                  f"ROC AUC {calibration['roc_auc']:.3f}")


@app.command()
def compare(
    photo_a: Path = typer.Argument(...),
    photo_b: Path = typer.Argument(...),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Draw the two coins and their inlier matches."),
    model: Optional[str] = typer.Option(None, "--model", help="Model file (.cm) for the embedding's score."),
    backend: str = BackendOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Are two photos the same coin? Local-feature matching under a geometric transform."""
    from coinmatch.compare import compare_photos
    from coinmatch.models.runtime import Embedder

    result = compare_photos(photo_a, photo_b, out_path, embedder=Embedder(model, backend=backend))
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
    loss: str = typer.Option("triplet", "--loss",
                             help="triplet, arcface, subcenter-arcface, or whitening (closed form from augmented "
                                  "pairs, no back-propagation: minutes; with --grey --rotations 16 --rings "
                                  "--whitening-views 2, the best measured on real photos: see the README)."),
    backbone: str = typer.Option("efficientnet_lite0", "--backbone",
                                 help="efficientnet_lite0, efficientnet_lite2 or resnet50."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights: a file, 'hub' or 'random'."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Embedding size (default 128; whitening 512)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Default 128; whitening 224."),
    grey: bool = typer.Option(False, "--grey", help="Colour-blind model: photos and black-and-white scans alike."),
    rotations: int = typer.Option(1, "--rotations",
                                  help="Rotation pooling: average the descriptor over this many angles (costs "
                                       "as many passes per image)."),
    stages: int = typer.Option(1, "--stages",
                               help="Pool the backbone's last N feature maps, not only its final one (Lite0: "
                                    "blocks, then the head; finer detail from earlier maps)."),
    rings: bool = typer.Option(False, "--rings",
                               help="Pool each feature map over three concentric rings (centre, middle, rim) as "
                                    "well as whole: where on the coin a feature lies, still rotation invariant."),
    disc: bool = typer.Option(False, "--disc",
                              help="Pool only the coin's disc, not the crop's corners outside it (their background "
                                   "changes when the coin turns)."),
    mask: bool = typer.Option(False, "--mask",
                              help="The network sees only the coin's disc: mid-grey around it, at every angle."),
    contrast: bool = typer.Option(False, "--contrast",
                                  help="Local contrast normalisation of the input: exposure, lamp strength and "
                                       "washed-out or dark prints matter less."),
    shrinkage: float = typer.Option(0.1, "--shrinkage", help="Whitening: shrinkage of the pair covariance."),
    whitening_views: int = typer.Option(1, "--whitening-views",
                                        help="Whitening: augmented views paired with each coin (more pairs, a "
                                             "steadier fit; each view costs one more pass over the photos)."),
    cells: int = typer.Option(0, "--cells",
                              help="Whitening: also keep cell descriptors of this many dimensions a cell (e.g. 64): "
                                   "the coin compared cell by cell, where on it each feature lies, added to the "
                                   "shortlist's score in search (0: none)."),
    cell_map: int = typer.Option(0, "--cell-map",
                                 help="With --cells: which of the backbone's last feature maps the cells come from, "
                                      "counted from the last (1); 0: the backbone's own (Lite0: 3, block 5, 7 x 7 "
                                      "at 224 px; 4 is block 4, 14 x 14)."),
    mine_pairs: bool = typer.Option(False, "--mine-pairs",
                                    help="Use the real pairs, photos of one coin that the training set holds "
                                         "more than once, found by verification (60+ inliers among each photo's "
                                         "20 nearest): whitening fits on them too; a gradient loss takes each such "
                                         "coin as one class, its views drawn from both photos."),
    epochs: int = typer.Option(12, "--epochs"),
    batch_size: int = typer.Option(48, "--batch-size"),
    lr: float = typer.Option(3e-4, "--lr", help="Learning rate of the backbone (the head's is 10x); lower it to "
                                              "fine-tune a trained model (--init)."),
    freeze_blocks: int = typer.Option(2, "--freeze-blocks", help="Early stages kept at ImageNet weights."),
    mining: str = typer.Option("semihard", "--mining", help="Triplet mining: semihard, hard or all."),
    margin: Optional[float] = typer.Option(None, "--margin",
                                           help="Loss margin (triplet: cosine, default 0.2; ArcFace: degrees, 28.6)."),
    type_column: Optional[str] = typer.Option(None, "--type-column",
                                              help="Coin type column: negatives of the same type are mined first."),
    val_pairs: Optional[Path] = typer.Option(None, "--val-pairs", help="Real photo pairs scored every epoch."),
    id_column: str = typer.Option("coin_id", "--id-column"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N images of each manifest."),
    disk_cache: bool = typer.Option(True, "--disk-cache/--no-disk-cache",
                                    help="Keep the prepared training images on disk (COINMATCH_CACHE) so the next "
                                         "run skips finding the coins (~0.5 GB for 7,000 photos at 128 px); "
                                         "the least recently used are deleted beyond COINMATCH_TRAINING_CACHE_GB "
                                         "(default 4)."),
    seed: int = typer.Option(0, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
    workers: int = typer.Option(0, "--workers",
                                help="Processes that find the coins and augment the batches beside this one (0: "
                                     "none). On a GPU they keep it fed; the results are the same for one seed "
                                     "and one number of workers."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    init: Optional[Path] = typer.Option(None, "--init",
                                        help="Fine-tune this model file (e.g. a whitened one) instead of starting "
                                             "from ImageNet; its backbone, size, invariances and head come with it."),
    keep: float = typer.Option(0.0, "--keep",
                               help="Weight of a pull towards the starting network's embeddings (learning without "
                                    "forgetting); 0: none."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train coin embeddings from one photo per coin, with augmentation positives."""
    from coinmatch.training.loop import TrainConfig, train as run_training

    whitening = loss == "whitening"
    dim = dim or (512 if whitening else 128)
    image_size = image_size or (224 if whitening else 128)
    cfg = TrainConfig(manifests=[str(m) for m in manifests], out=str(out_path), loss=loss, backbone=backbone,
                      weights=weights, dim=dim, image_size=image_size, grey=grey, rotations=rotations,
                      stages=stages, rings=rings, disc=disc, mask=mask, contrast=contrast, shrinkage=shrinkage,
                      whitening_views=whitening_views, cells=cells, cell_map=cell_map, mine_pairs=mine_pairs,
                      epochs=epochs, batch_size=batch_size, lr=lr,
                      freeze_blocks=freeze_blocks, mining=mining, margin=margin, type_column=type_column,
                      val_pairs=str(val_pairs) if val_pairs else None, id_column=id_column, max_minutes=max_minutes,
                      limit=limit, disk_cache=disk_cache, seed=seed, device=device, workers=workers,
                      resume=resume, init=str(init) if init else None, keep=keep)
    summary = run_training(cfg, progress=not as_json)
    if as_json:
        _emit_json({k: v for k, v in summary.items()})
    else:
        last = summary["history"][-1] if summary["history"] else {}
        out.print(f"wrote {escape(str(summary['model']))} (best epoch {summary['best_epoch']} of "
                  f"{summary['epochs_run']}); history and plots in {escape(str(summary['work_dir']))}; "
                  f"{summary['wall_seconds']:.0f} s; "
                  f"{summary['train_images_per_s']:.1f} training images/s")
        if "mined_pairs" in summary:
            out.print(f"{summary['mined_pairs']} same-coin photo pairs mined in {summary['mining_seconds']:.0f} s")
        out.print({k: round(v, 4) for k, v in last.items() if isinstance(v, float)})
        if loss == "whitening":  # what the fit changed, on the same held-out views and pairs
            from coinmatch.training.loop import VALIDATION_LABELS

            before, after = summary["history"][0], summary["history"][-1]
            out.print("; ".join(f"{label} {before[k]:.3f} -> {after[k]:.3f}" for k, label in VALIDATION_LABELS.items()
                                if k in after) + " (before -> after the whitening)")


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
    from coinmatch.training.mining import mine_manifest

    if min_inliers < 1 or shortlist < 1:
        raise CoinmatchError(f"--min-inliers and --shortlist must be 1 or more, not {min_inliers} and {shortlist}")
    mined = mine_manifest(manifest, out_path, type_column, model, shortlist, min_inliers, progress=not as_json)
    summary = {"pairs": len(mined.pairs), "out": str(out_path), "seconds": round(mined.seconds, 1)}
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
    from coinmatch.images import save_rgb
    from coinmatch.prepare import prepare_photo
    from coinmatch.training.augment import augmentation_grid

    save_rgb(augmentation_grid(prepare_photo(photo).crop, n=n, out_size=size, seed=seed), out_path)
    out.print(f"wrote {escape(str(out_path))}")


@app.command()
def embed(
    manifest: Path = typer.Argument(...),
    out_path: Path = typer.Option(..., "--out", help="Where to write the vectors (.npy); ids go beside it."),
    model: Optional[str] = typer.Option(None, "--model"),
    backend: str = BackendOpt,
):
    """Embed every image of a manifest: vectors.npy plus vectors.ids.txt (one 'id<TAB>image' per row)."""
    from coinmatch.embed import embed_manifest

    n, dim = embed_manifest(manifest, out_path, model=model, backend=backend)
    err.print(f"wrote {n} vectors of {dim} dimensions to {escape(str(out_path))}")


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
