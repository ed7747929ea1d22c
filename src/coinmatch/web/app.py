"""The web app: pages rendered on the server (Jinja2) and a JSON API under /api/, both thin over :class:`Service`.

``coinmatch serve CATALOGUE_DIR`` runs it with uvicorn. Every asset is served from the package (no CDN, no outside
font); the API's OpenAPI page uses the Swagger UI of the ``swagger-ui-bundle`` package, served locally too.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, Query as Param, Request, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from coinmatch import CoinmatchError, __version__
from coinmatch.collection import DEFAULT_VERIFIED_THRESHOLD
from coinmatch.web.service import NotFound, Service, TooLarge

HERE = Path(__file__).parent
PAGE_SIZE = 48


def _read(upload: UploadFile | None, limit: int) -> tuple[str, bytes] | None:
    """An uploaded file's name (a label only) and bytes, refused past ``limit`` before it is read whole."""
    if upload is None or not upload.filename:
        return None
    name = Path(upload.filename.replace("\\", "/")).name[:200] or "upload"
    if upload.size is not None and upload.size > limit:
        raise TooLarge(f"{name}: {upload.size / 1024**2:.1f} MB; the limit is {limit // 1024**2} MB")
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{name}: larger than the limit of {limit // 1024**2} MB")
    return name, data


def status_of(exc: CoinmatchError) -> int:
    """The HTTP status of an error meant for the user."""
    return 404 if isinstance(exc, NotFound) else 413 if isinstance(exc, TooLarge) else 400


def _jpeg(rgb: np.ndarray) -> Response:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return Response(buf.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="coinmatch", version=__version__, docs_url=None, redoc_url=None,
                  description="Find the very coin of a photograph in a catalogue. `POST /api/identify` answers what "
                              "`coinmatch search --json` prints for one photo.")
    # Swagger UI 4 (the swagger-ui-bundle package's) reads OpenAPI 3.0 documents; FastAPI's is 3.1 in name only
    # for what this API uses (checked: the page renders every route)
    app.openapi_version = "3.0.3"
    app.state.service = service
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["q"] = lambda s: quote(str(s), safe="")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    import swagger_ui_bundle

    app.mount("/vendor/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")

    def read(upload: UploadFile | None) -> tuple[str, bytes] | None:
        return _read(upload, service.max_upload)

    def files_of(files: list[UploadFile]) -> list[tuple[str, bytes]]:
        """Photos and zips of photos, each within its limit."""
        read_all = [_read(f, service.max_zip if (f.filename or "").lower().endswith(".zip") else service.max_upload)
                    for f in files]
        return [r for r in read_all if r]

    def faces_of(image, obverse, reverse) -> dict[str | None, tuple[str, bytes]]:
        faces = {None: read(image), "obverse": read(obverse), "reverse": read(reverse)}
        return {side: f for side, f in faces.items() if f}

    def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("error", None)
        return templates.TemplateResponse(request, template, {"catalogues": list(service.catalogues), "version": __version__,
                                                           "service": service, **context}, status_code=status)

    @app.exception_handler(CoinmatchError)
    def coinmatch_error(request: Request, exc: CoinmatchError):
        status = status_of(exc)
        if request.url.path.startswith("/api/") or request.url.path.startswith("/media/"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return page(request, "error.html", status, error=str(exc))

    # -- pages ---------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/identify", status_code=303)

    @app.get("/identify", response_class=HTMLResponse, include_in_schema=False)
    def identify_form(request: Request):
        return page(request, "identify.html", query=None)

    @app.post("/identify", include_in_schema=False)
    def identify_page(request: Request, file: UploadFile | None = File(None), obverse: UploadFile | None = File(None),
                      reverse: UploadFile | None = File(None), catalogue: str | None = Form(None),
                      verify: bool = Form(False), top_k: int = Form(5)):
        try:
            photo = read(file)
            uploads = {None: photo} if photo else {"obverse": read(obverse), "reverse": read(reverse)}
            query = service.identify(uploads, catalogue, max(1, min(top_k, 50)), verify)
        except CoinmatchError as exc:
            return page(request, "identify.html", status_of(exc), query=None, error=str(exc))
        return RedirectResponse(f"/identify/{query.id}", status_code=303)

    @app.get("/identify/{query_id}", response_class=HTMLResponse, include_in_schema=False)
    def identify_result(request: Request, query_id: str):
        query = service.query(query_id)
        name, result = next(iter(query.results.items()))
        return page(request, "identify.html", query=query, catalogue=name, result=result,
                    calibrated=service.catalogues[name].info()["calibration"] is not None,
                    default_threshold=DEFAULT_VERIFIED_THRESHOLD)

    @app.get("/compare/{query_id}/{catalogue}/{entry_id}", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(request: Request, query_id: str, catalogue: str, entry_id: str, row: int | None = None):
        query, ev = service.evidence(query_id, catalogue, entry_id, row)
        result = query.results.get(catalogue)
        match = next((m for m in (result.matches if result else []) if m.id == entry_id), None)
        return page(request, "compare.html", query=query, catalogue=catalogue, entry=service.entry(catalogue, entry_id),
                    evidence=ev, match=match)

    @app.get("/collection", response_class=HTMLResponse, include_in_schema=False)
    def collection_form(request: Request):
        return page(request, "collection.html", job=None)

    @app.post("/collection", include_in_schema=False)
    def collection_start(request: Request, files: list[UploadFile] = File(...), verify: bool = Form(False),
                         top_k: int = Form(5)):
        try:
            job = service.start_collection(files_of(files), verify, max(1, min(top_k, 50)))
        except CoinmatchError as exc:
            return page(request, "collection.html", status_of(exc), job=None,
                        error=str(exc))
        return RedirectResponse(f"/collection/{job.id}", status_code=303)

    @app.get("/collection/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def collection_page(request: Request, job_id: str, only: str = ""):
        job = service.job(job_id)
        rows = [(i, r) for i, r in enumerate(job.results) if only != "match" or r.decision == "match"]
        return page(request, "collection.html", job=job, rows=rows, only=only)

    @app.get("/collection/{job_id}/report.{kind}", include_in_schema=False)
    def collection_report(job_id: str, kind: str):
        if kind not in ("csv", "html"):
            raise NotFound(f"no report of kind {kind!r} (csv or html)")
        text = service.report(job_id, kind)
        media = "text/csv; charset=utf-8" if kind == "csv" else "text/html; charset=utf-8"
        disposition = "attachment" if kind == "csv" else "inline"
        return Response(text, media_type=media,
                        headers={"Content-Disposition": f'{disposition}; filename="provenance-{job_id[:8]}.{kind}"'})

    @app.get("/catalogue", include_in_schema=False)
    def catalogue_home():
        return RedirectResponse(f"/catalogue/{quote(next(iter(service.catalogues)), safe='')}", status_code=303)

    @app.get("/catalogue/{name}", response_class=HTMLResponse, include_in_schema=False)
    def catalogue_page(request: Request, name: str, q: str = "", page_no: int = Param(1, alias="page")):
        page_no = max(1, page_no)
        total, entries = service.entries(name, q, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
        return page(request, "catalogue.html", name=name, q=q, total=total, entries=entries, page_no=page_no,
                    pages=max(1, -(-total // PAGE_SIZE)), info=service.catalogues[name].info())

    @app.get("/catalogue/{name}/entry/{entry_id}", response_class=HTMLResponse, include_in_schema=False)
    def entry_page(request: Request, name: str, entry_id: str):
        return page(request, "entry.html", name=name, entry=service.entry(name, entry_id))

    @app.get("/catalogue/{name}/add", response_class=HTMLResponse, include_in_schema=False)
    def add_form(request: Request, name: str):
        service.catalogue(name)
        return page(request, "add.html", name=name, columns=_columns(name), values={})

    @app.post("/catalogue/{name}/add", include_in_schema=False)
    def add_page(request: Request, name: str, entry_id: str = Form(..., alias="id"),
                 image: UploadFile | None = File(None), obverse: UploadFile | None = File(None),
                 reverse: UploadFile | None = File(None), field_name: list[str] = Form([]),
                 field_value: list[str] = Form([])):
        metadata = {k.strip(): v.strip() for k, v in zip(field_name, field_value) if k.strip() and v.strip()}
        try:
            service.add_entry(name, entry_id, metadata, faces_of(image, obverse, reverse))
        except CoinmatchError as exc:
            return page(request, "add.html", status_of(exc), name=name,
                        columns=_columns(name), values={"id": entry_id, **metadata}, error=str(exc))
        return RedirectResponse(f"/catalogue/{quote(name, safe='')}/entry/{quote(entry_id, safe='')}",
                                status_code=303)

    def _columns(name: str) -> list[str]:
        """The metadata columns of a catalogue's entries (from its first ones), for the add form."""
        seen: list[str] = []
        for e in service.entries(name, "", 200, 0)[1]:
            seen += [k for k in e["metadata"] if k not in seen]
        return seen or ["type", "auction", "sale", "lot", "date", "price", "link", "notes"]

    # -- images --------------------------------------------------------------------------------------------
    @app.get("/media/query/{query_id}/{face}/{kind}.jpg", include_in_schema=False)
    def query_image(query_id: str, face: str, kind: str):
        query = service.query(query_id)
        side = None if face == "photo" else face
        if side not in query.faces or kind not in ("crop", "outlined") or (kind == "outlined" and
                                                                           side not in query.outlined):
            raise NotFound(f"no {kind} image of face {face!r}")
        return _jpeg(query.outlined[side] if kind == "outlined" else query.faces[side].crop)

    @app.get("/media/evidence/{query_id}/{catalogue}/{entry_id}/{kind}.jpg", include_in_schema=False)
    def evidence_image(query_id: str, catalogue: str, entry_id: str, kind: str, row: int | None = None):
        if kind not in ("query", "aligned", "candidate", "matches"):
            raise NotFound(f"no evidence image {kind!r}")
        _, ev = service.evidence(query_id, catalogue, entry_id, row)
        image = getattr(ev, kind)
        if image is None:
            raise NotFound("no fit was accepted, so the query could not be turned onto the candidate")
        return _jpeg(image)

    @app.get("/media/thumb/{catalogue}/{row}.jpg", include_in_schema=False)
    def thumb(catalogue: str, row: int):
        return FileResponse(service.thumbnail(catalogue, row), media_type="image/jpeg")

    @app.get("/media/crop/{catalogue}/{row}.jpg", include_in_schema=False)
    def crop(catalogue: str, row: int):
        service.thumbnail(catalogue, row)  # the row exists
        return _jpeg(service.catalogues[catalogue].crop(row))

    # -- the JSON API --------------------------------------------------------------------------------------
    @app.post("/api/identify", tags=["identify"])
    def api_identify(file: UploadFile | None = File(None, description="The photo of the coin."),
                     reverse: UploadFile | None = File(None, description="Optionally its other face."),
                     catalogue: str | None = Form(None, description="Which catalogue (default: the first served)."),
                     top_k: int = Form(5, ge=1, le=50), verify: bool | None = Form(None,
                                                                                 description="Verify (default: the server's setting).")):
        """One coin's best catalogue entries: the object that `coinmatch search --json` prints for one photo. The
        header `X-Query-Id` names the query for `/api/evidence`."""
        first = read(file)
        if first is None:
            raise CoinmatchError("no photo in field 'file'")
        second = read(reverse)
        uploads = {"obverse": first, "reverse": second} if second else {None: first}
        query = service.identify(uploads, catalogue, top_k, verify)
        result = next(iter(query.results.values()))
        return JSONResponse(result.to_dict(), headers={"X-Query-Id": query.id})

    @app.get("/api/evidence/{query_id}/{catalogue}/{entry_id}", tags=["identify"])
    def api_evidence(query_id: str, catalogue: str, entry_id: str, row: int | None = None):
        """The verification of one candidate of a query: inliers, tentative matches, the turn and scale of the
        fit, and where its pictures are."""
        _, ev = service.evidence(query_id, catalogue, entry_id, row)
        v = ev.verification
        base = f"/media/evidence/{query_id}/{quote(catalogue, safe='')}/{quote(entry_id, safe='')}"
        return {"entry": entry_id, "row": ev.row, "inliers": v.inliers, "matches": v.matches,
                "rotation": None if v.rotation is None else round(v.rotation, 1),
                "scale": None if v.scale is None else round(v.scale, 3),
                "images": {k: f"{base}/{k}.jpg?row={ev.row}" for k in ("query", "aligned", "candidate", "matches")
                           if getattr(ev, k) is not None}}

    @app.get("/api/catalogues", tags=["catalogue"])
    def api_catalogues():
        """Every catalogue served, with its size, model and calibration (as `catalog info --json`)."""
        return {name: cat.info() for name, cat in service.catalogues.items()}

    @app.get("/api/catalogues/{name}/entries", tags=["catalogue"])
    def api_entries(name: str, q: str = "", limit: int = Param(50, ge=1, le=500), offset: int = Param(0, ge=0)):
        """Entries whose id or any metadata value holds every word of `q`."""
        total, entries = service.entries(name, q, limit, offset)
        return {"total": total, "entries": entries}

    @app.get("/api/catalogues/{name}/entries/{entry_id}", tags=["catalogue"])
    def api_entry(name: str, entry_id: str):
        return service.entry(name, entry_id)

    @app.post("/api/catalogues/{name}/entries", tags=["catalogue"], status_code=201)
    def api_add(name: str, entry_id: str = Form(..., alias="id"), metadata: str = Form("{}"),
                image: UploadFile | None = File(None), obverse: UploadFile | None = File(None),
                reverse: UploadFile | None = File(None)):
        """Add an entry (its image, or obverse and/or reverse; `metadata`: a JSON object of text fields);
        searchable at once."""
        try:
            fields = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise CoinmatchError(f"metadata: not JSON ({exc})") from exc
        if not isinstance(fields, dict):
            raise CoinmatchError("metadata: give a JSON object of column -> text")
        service.add_entry(name, entry_id, {str(k): str(v) for k, v in fields.items()}, faces_of(image, obverse, reverse))
        return service.entry(name, entry_id)

    @app.post("/api/collections", tags=["collection"], status_code=202)
    def api_collection(files: list[UploadFile] = File(..., description="Photos and/or zips of photos."),
                       verify: bool | None = Form(None), top_k: int = Form(5, ge=1, le=50)):
        """Match a collection in the background against every catalogue; poll `/api/collections/{id}`."""
        return service.start_collection(files_of(files), verify, top_k).summary()

    @app.get("/api/collections/{job_id}", tags=["collection"])
    def api_job(job_id: str, results: bool = False):
        """Progress (done of total); with `results`, each coin's best match, decision and chain so far."""
        job = service.job(job_id)
        out = job.summary()
        if results:
            out["results"] = [_coin_json(r) for r in job.results]
        return out

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="coinmatch API",
                                   swagger_js_url="/vendor/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/vendor/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io

    return app


def _coin_json(r) -> dict:
    best = r.best
    out = {"coin": r.coin.name, "photos": [p.name for p in r.coin.faces.values()], "decision": r.decision,
           "warnings": r.warnings, "error": r.error,
           "chain": [{"catalogue": a.catalogue, "id": a.match.id, "date": a.date, **a.match.to_dict()} for a in r.chain]}
    if best:
        out["catalogue"], out["best"] = best[0], best[1].to_dict()
    return out
