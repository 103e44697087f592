"""Demo ASGI worker for obsproxy: the app behind `make run` and the end-to-end test fixture.

Deterministic, no dependencies beyond FastAPI/Starlette and an ASGI server (the pinned
requirements.txt beside it, installed into the project venv .venv by scripts/deps.sh).
Every JSON answer names the process: "worker" is $WORKER_NAME, else $OBSPROXY_WORKER_NAME (set by
obsproxy in supervisor mode: w1, w2, ...), else "pid-<pid>".

Endpoints
  GET  /                        {"worker", "pid", "method", "path"}
  ANY  /anything/{path}         the same, echoing the path (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)
  GET  /slow?seconds=1.5        asyncio.sleep (cap 60 s), then JSON; the event loop stays free
  GET  /block?seconds=2         time.sleep inside async def (cap 60 s): the whole worker stops answering
  GET  /burn?ms=5               burns that much CPU on the event loop (busy loop, cap 1000 ms), then JSON:
                                a CPU-bound endpoint whose latency climbs with concurrency (benchmarks)
  GET  /concurrency             {"current", "max", "total", "worker"}: requests of /slow and /burn in progress
                                in this process now, the most seen at once since start or the last reset, and
                                how many began since start; ?reset=true sets max to current. Counted in the
                                process, deterministic
  GET  /api/v1/health           structured health: 200 healthy|degraded, 503 unhealthy (database down)
  GET  /health                  the same (obsproxy's default OBSPROXY_UPSTREAM_HEALTH_PATH)
  POST /control/checks/{name}?ok=false|true
                                flip database|cache|plugins for this process (404 for another name);
                                answers 200 with the new health JSON. Initial values from
                                APP_DATABASE_OK, APP_CACHE_OK, APP_PLUGINS_OK (default true)
  GET  /sse?count=5&interval=0.2
                                text/event-stream: "id: n" / "data: {"n": n, "worker": ...}", n = 1..count
                                (count cap 1000, interval cap 60 s)
  WS   /ws                      echo every text or binary message until the client closes
  POST /upload                  streams the body: {"bytes", "sha256", "uploads", "worker"}
  GET  /headers                 request headers (lowercase name -> value, repeats joined by ", ")
                                plus "client": the peer host (null over a unix socket)
  GET  /status/{code}           empty body with that status (100-599, else 400)
  GET|HEAD /range               a fixed 100-byte text/plain resource ("0123456789" x 10) that honours
                                one "Range: bytes=a-b|a-|-n": 206 with Content-Range, 416 when
                                unsatisfiable; Accept-Ranges: bytes and an ETag always
  GET  /gzip                    a fixed JSON document gzip-compressed (gzip mtime 0, so the same bytes
                                every time) with Content-Encoding: gzip, whatever Accept-Encoding says
  GET  /cookies                 {"cookies": 2} with two Set-Cookie headers (a=1, b=2)
  GET  /notype                  the body "<html><body>no type</body></html>" without a Content-Type
  GET  /stream?chunks=3&length=false
                                chunks lines "chunk n\n" streamed one by one; with length=true the
                                Content-Length is announced (chunks cap 1000)
  GET  /slowlength?bytes=5&interval=0.4
                                a text/plain body of `bytes` "x" with its Content-Length, one byte
                                every `interval` seconds (bytes cap 1000, interval cap 60 s)
  GET  /metrics                 this process' own Prometheus metrics (prometheus_client's ordinary
                                single-process registry, text format, gzip when asked): see Metrics

Metrics (prometheus_client, default single-process mode: no PROMETHEUS_MULTIPROC_DIR; obsproxy
fetches every worker's /metrics and adds the worker label, OBSPROXY_WORKER_METRICS_PATH=/metrics)
  app_requests_total{route,method,code}       finished HTTP requests; route is the route template
                                              (/anything/{path}), "unmatched" for a 404 without one
  app_request_duration_seconds{route}         histogram, receipt to the end of the response
  app_requests_in_progress                    gauge, requests being handled now
  process_*, python_gc_*, python_info         prometheus_client's default collectors, per process
  /health, /api/v1/health and /metrics are not counted: obsproxy's probes and scrapes are not traffic,
  so sum by (worker) (rate(app_requests_total[1m])) matches obsproxy_requests_total's rate.
  GET  /alloc?mib=100           allocate and keep that many MiB (written, so resident; cap 1024 per
                                call): {"worker", "pid", "held_mib"}, for the process-memory figures

Start it (from the repository root, after scripts/deps.sh has built .venv)
  bin/obsproxy --workers 3 -- .venv/bin/python -m uvicorn app:app --app-dir examples/app --uds {socket}
      obsproxy starts and supervises the workers (what `make run` does); by hand, one per address:
  .venv/bin/python -m uvicorn app:app --app-dir examples/app --host 127.0.0.1 --port 8001
  .venv/bin/python -m uvicorn app:app --app-dir examples/app --uds /tmp/obsproxy-app.sock
  .venv/bin/hypercorn --bind 127.0.0.1:8002 examples/app/app.py:app
  .venv/bin/granian --interface asgi --host 127.0.0.1 --port 8003 --working-dir examples/app app:app
      hypercorn answers HTTP/1.1 and HTTP/2 cleartext with prior knowledge on the same port
      (curl --http2-prior-knowledge http://127.0.0.1:8002/); uvicorn speaks HTTP/1.1 only.
  uvicorn trusts X-Forwarded-For from 127.0.0.1 by default, so behind a loopback proxy /headers
  reports the forwarded address as "client"; add --no-proxy-headers to see the real peer.
"""

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import re
import time

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

VERSION = "1.0.0"
MAX_SECONDS = 60.0
MAX_EVENTS = 1000
PLUGINS_TOTAL = 3


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "true").strip().lower() not in ("0", "false", "no", "off")


CHECKS = {  # simulated dependency state of this process, flipped by /control/checks/{name}
    "database": _env_flag("APP_DATABASE_OK"),
    "cache": _env_flag("APP_CACHE_OK"),
    "plugins": _env_flag("APP_PLUGINS_OK"),
}
START = time.monotonic()
UPLOADS = 0
MAX_BURN_MS = 1000.0


class _Concurrency:
    """Counts the /slow and /burn requests in progress in this process and the most seen at once.

    One event loop per process, so plain integers are safe: no await between read and write."""

    def __init__(self) -> None:
        self.current = 0
        self.max = 0
        self.total = 0

    def __enter__(self) -> None:
        self.total += 1
        self.current += 1
        self.max = max(self.max, self.current)

    def __exit__(self, *exc) -> None:
        self.current -= 1


CONCURRENCY = _Concurrency()

@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI):
    global START
    START = time.monotonic()  # uptime counts from when this process began serving
    yield


app = FastAPI(title="obsproxy demo app", version=VERSION, lifespan=_lifespan)


# --- the app's own metrics ----------------------------------------------------------------------

REQUESTS = Counter("app_requests", "Finished HTTP requests by route template, method and status code.",
                   ["route", "method", "code"])
DURATION = Histogram("app_request_duration_seconds", "Seconds from receipt to the end of the response, by route.",
                     ["route"])
IN_PROGRESS = Gauge("app_requests_in_progress", "HTTP requests being handled now.")
UNCOUNTED = frozenset({"/metrics", "/health", "/api/v1/health"})  # obsproxy's scrapes and probes are not traffic


class MetricsMiddleware:
    """Pure ASGI middleware (streams and WebSockets pass untouched) counting HTTP requests."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in UNCOUNTED:
            await self.inner(scope, receive, send)
            return
        code = 500
        began = time.perf_counter()

        async def send_status(message):
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        IN_PROGRESS.inc()
        try:
            await self.inner(scope, receive, send_status)
        finally:
            IN_PROGRESS.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(route, scope["method"], str(code)).inc()
            DURATION.labels(route).observe(time.perf_counter() - began)


app.add_middleware(MetricsMiddleware)


def worker() -> str:
    # WORKER_NAME when set by hand; OBSPROXY_WORKER_NAME when obsproxy started this process
    # (supervisor mode, spec section 8); else the pid.
    return os.environ.get("WORKER_NAME") or os.environ.get("OBSPROXY_WORKER_NAME") or f"pid-{os.getpid()}"


def _clamp(value: float, cap: float) -> float:
    return min(max(value, 0.0), cap)


def _ident(request: Request) -> dict:
    return {"worker": worker(), "pid": os.getpid(), "method": request.method, "path": request.url.path}


@app.get("/")
async def root(request: Request):
    return _ident(request)


@app.api_route("/anything/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def anything(request: Request, path: str):
    return _ident(request)


@app.get("/slow")
async def slow(request: Request, seconds: float = 1.0):
    seconds = _clamp(seconds, MAX_SECONDS)
    with CONCURRENCY:
        await asyncio.sleep(seconds)
    return {**_ident(request), "slept": seconds}


@app.get("/burn")
async def burn(request: Request, ms: float = 5.0):
    ms = _clamp(ms, MAX_BURN_MS)
    with CONCURRENCY:
        deadline = time.perf_counter() + ms / 1000
        n = 0
        while time.perf_counter() < deadline:  # deliberately CPU-bound on the event loop
            n += 1
    return {**_ident(request), "burned_ms": ms}


@app.get("/concurrency")
async def concurrency(reset: bool = False):
    if reset:
        CONCURRENCY.max = CONCURRENCY.current
    return {"current": CONCURRENCY.current, "max": CONCURRENCY.max, "total": CONCURRENCY.total, "worker": worker()}


@app.get("/block")
async def block(request: Request, seconds: float = 1.0):
    seconds = _clamp(seconds, MAX_SECONDS)
    time.sleep(seconds)  # deliberately blocks the event loop: a stuck synchronous handler
    return {**_ident(request), "blocked": seconds}


# --- health -------------------------------------------------------------------------------------

async def _probe(name: str) -> dict:
    """One simulated dependency check (~1 ms), shaped like a real probe's result."""
    began = time.perf_counter()
    await asyncio.sleep(0.001)
    ok = CHECKS[name]
    result = {
        "status": "ok" if ok else "error",
        "latency_ms": round((time.perf_counter() - began) * 1000, 3),
        "detail": None if ok else f"{name} check failed (simulated)",
    }
    if name == "plugins":
        result.update(total=PLUGINS_TOTAL, runnable=PLUGINS_TOTAL if ok else 0)
    return result


async def _health() -> tuple:
    database, cache, plugins = await asyncio.gather(_probe("database"), _probe("cache"), _probe("plugins"))
    if database["status"] != "ok":
        status = "unhealthy"
    elif cache["status"] != "ok" or plugins["status"] != "ok":
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "version": VERSION,
        "uptime_seconds": round(time.monotonic() - START, 3),
        "pid": os.getpid(),
        "worker": worker(),
        "checks": {"database": database, "cache": cache, "plugins": plugins},
    }
    return body, (503 if status == "unhealthy" else 200)


@app.get("/api/v1/health")
@app.get("/health")
async def health():
    body, code = await _health()
    return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})


@app.post("/control/checks/{name}")
async def control_check(name: str, ok: bool):
    if name not in CHECKS:
        raise HTTPException(404, f"unknown check {name!r}; known: {', '.join(CHECKS)}")
    CHECKS[name] = ok
    body, _ = await _health()
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# --- streams ------------------------------------------------------------------------------------

@app.get("/sse")
async def sse(count: int = 5, interval: float = 0.2):
    count = min(max(count, 0), MAX_EVENTS)
    interval = _clamp(interval, MAX_SECONDS)
    name = worker()

    async def events():
        for n in range(1, count + 1):
            if n > 1:
                await asyncio.sleep(interval)
            yield f"id: {n}\ndata: {json.dumps({'n': n, 'worker': name})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message.get("bytes") or b"")


# --- bodies and headers -------------------------------------------------------------------------

@app.post("/upload")
async def upload(request: Request):
    global UPLOADS
    digest, total = hashlib.sha256(), 0
    async for chunk in request.stream():
        digest.update(chunk)
        total += len(chunk)
    UPLOADS += 1
    return {"bytes": total, "sha256": digest.hexdigest(), "uploads": UPLOADS, "worker": worker()}


@app.get("/headers")
async def headers(request: Request):
    received: dict = {}
    for name, value in request.headers.items():  # names arrive lowercased
        received[name] = f"{received[name]}, {value}" if name in received else value
    received["client"] = request.client.host if request.client else None
    return received


@app.get("/metrics", include_in_schema=False)
async def metrics(request: Request):
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encoder(REGISTRY)
    headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return Response(body, headers=headers)


@app.get("/status/{code}")
async def status(code: int):
    if not 100 <= code <= 599:
        raise HTTPException(400, "status code must be within 100-599")
    return Response(status_code=code)


# --- fidelity fixtures (what a proxy must pass on unchanged) ------------------------------------

RANGE_BODY = b"0123456789" * 10
RANGE_ETAG = '"range-v1"'
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@app.api_route("/range", methods=["GET", "HEAD"])
async def ranged(request: Request):
    common = {"Accept-Ranges": "bytes", "ETag": RANGE_ETAG}
    size = len(RANGE_BODY)
    spec = request.headers.get("range")
    match = _RANGE.match(spec.strip()) if spec else None
    if spec is None or match is None or match.group(1) == match.group(2) == "":
        return Response(RANGE_BODY, media_type="text/plain", headers=common)
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return Response(status_code=416, headers={**common, "Content-Range": f"bytes */{size}"})
    return Response(RANGE_BODY[start:end + 1], status_code=206, media_type="text/plain",
                    headers={**common, "Content-Range": f"bytes {start}-{end}/{size}"})


GZIP_BODY = gzip.compress(json.dumps({"compressed": True, "items": list(range(50))}).encode(), mtime=0)


@app.get("/gzip")
async def gzipped():
    return Response(GZIP_BODY, media_type="application/json", headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})


@app.get("/cookies")
async def cookies():
    response = JSONResponse({"cookies": 2})
    response.set_cookie("a", "1", path="/")
    response.set_cookie("b", "2", path="/", httponly=True)
    return response


@app.get("/notype")
async def notype():
    return Response(b"<html><body>no type</body></html>")


@app.get("/stream")
async def stream(chunks: int = 3, length: bool = False):
    chunks = min(max(chunks, 0), MAX_EVENTS)
    parts = [f"chunk {n}\n".encode() for n in range(1, chunks + 1)]

    async def body():
        for part in parts:
            yield part
            await asyncio.sleep(0)

    headers = {"Content-Length": str(sum(map(len, parts)))} if length else None
    return StreamingResponse(body(), media_type="text/plain", headers=headers)


@app.get("/slowlength")
async def slowlength(bytes: int = 5, interval: float = 0.4):
    count = min(max(bytes, 0), 1000)
    interval = _clamp(interval, MAX_SECONDS)

    async def body():
        for n in range(count):
            if n > 0:
                await asyncio.sleep(interval)
            yield b"x"

    return StreamingResponse(body(), media_type="text/plain", headers={"Content-Length": str(count)})
HELD = []  # memory kept by /alloc for the life of the process
MAX_ALLOC_MIB = 1024


@app.get("/alloc")
async def alloc(mib: int = 100):
    if not 0 <= mib <= MAX_ALLOC_MIB:
        raise HTTPException(400, f"mib must be within 0-{MAX_ALLOC_MIB}")
    HELD.append(bytearray(b"\x01") * (mib << 20))  # written, so every page is resident
    held = sum(len(b) for b in HELD) >> 20
    return {"worker": worker(), "pid": os.getpid(), "held_mib": held}
