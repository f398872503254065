"""The ceiling for bench/intake.py: uvicorn + FastAPI answering the webhook route with no work behind it.

Same framework, server and settings as ``incident-bot serve`` (uvicorn with the event loop and HTTP
parser the project installs, no access log, no lifespan); the route checks the bearer token in
constant time, reads the body and answers 202 — everything except parsing and storing the alerts.

    INCIDENT_BOT_WEBHOOK_TOKEN=… python -m uvicorn _trivial_app:app --app-dir bench --port 8080
"""

from __future__ import annotations

import hmac
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

EXPECTED = f"Bearer {os.environ.get('INCIDENT_BOT_WEBHOOK_TOKEN', '')}".encode()

app = FastAPI(docs_url=None, redoc_url=None)


@app.post("/alerts/{source}", status_code=202)
async def receive(source: str, request: Request) -> JSONResponse:
    if not hmac.compare_digest(request.headers.get("authorization", "").encode(), EXPECTED):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    body = await request.body()
    return JSONResponse({"accepted": len(body), "source": source}, status_code=202)


@app.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"ok": True})
