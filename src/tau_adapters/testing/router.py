"""A ThunderAgent-protocol router stand-in on loopback, in front of a separate engine.

Tests use it where the real router (``python -m ThunderAgent``, a separate install) is absent, so
that router and engine are two servers, as in production: the router owns programs, the engine only
generates. It speaks the wire protocol of the two real builds (github.com/ThunderAgent-org/
ThunderAgent; see `tau_adapters.agents.thunderagent`), not their scheduling:

- ``build="main"``: ``POST /v1/chat/completions`` only; ``program_id`` read from the top-level body
  (or ``extra_body``), ``"default"`` when absent, stripped before the engine; the engine's status
  and body relayed as they are.
- ``build="tool_improve"`` (started with ``--enable-slime-adapter``): also ``POST /generate``,
  forwarded with the body unchanged; any engine failure answered with HTTP 502 and
  ``{"detail": "Backend generate request failed: <error>"}``, an engine 4xx/5xx worded as httpx
  words it (``Client error '400 Bad Request' for url '...'``).
- Both: ``GET /programs``, ``POST /programs/release {"program_id"}`` -> ``{"program_id",
  "released"}`` (false for a program it does not know), ``GET /health``.

Counters for assertions: ``registered`` (programs created), ``released`` (successful releases),
``release_calls``, ``steps`` (requests per program, retries included). `forget` drops a program
without a release (a router restart), to exercise ``released: false``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http import HTTPStatus
from typing import Any

from tau_adapters.testing.server import LoopbackServer

BUILDS = ("main", "tool_improve")


class LoopbackRouter(LoopbackServer):
    """ThunderAgent's HTTP protocol in a background thread, forwarding to `engine_url`."""

    def __init__(self, engine_url: str, *, build: str = "tool_improve") -> None:
        if build not in BUILDS:
            raise ValueError(f"build must be one of {BUILDS}, got {build!r}")
        self.engine_url = engine_url.rstrip("/")
        self.build = build
        self.programs: dict[str, dict[str, Any]] = {}
        self.registered: Counter[str] = Counter()
        self.released: Counter[str] = Counter()
        self.release_calls: Counter[str] = Counter()
        self.steps: Counter[str] = Counter()
        self._lock = threading.Lock()

    def forget(self, program_id: str) -> None:
        """Drop a program as a restarted router would (its release then answers false)."""
        with self._lock:
            self.programs.pop(program_id, None)

    def live(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self.programs.items()}

    # -- programs ----------------------------------------------------------------------------------
    def _program_of(self, body: dict[str, Any]) -> str:
        if "program_id" in body:
            return str(body["program_id"])
        extra = body.get("extra_body")
        if isinstance(extra, dict) and "program_id" in extra:
            return str(extra["program_id"])
        return "default"

    def _step(self, program_id: str) -> None:
        with self._lock:
            if program_id not in self.programs:
                self.programs[program_id] = {"step_count": 0, "backend": self.engine_url}
                self.registered[program_id] += 1
            self.programs[program_id]["step_count"] += 1
            self.steps[program_id] += 1

    # -- HTTP --------------------------------------------------------------------------------------
    def app(self) -> Any:
        import aiohttp
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        router = self

        async def post(url: str, body: dict[str, Any]) -> tuple[int, bytes, str]:
            # A session per request: simple, and nothing is left open when the thread stops.
            async with (
                aiohttp.ClientSession() as client,
                client.post(url, json=body) as response,
            ):
                return response.status, await response.read(), response.content_type

        async def read_json(request: Request) -> dict[str, Any] | None:
            try:
                body = await request.json()
            except Exception:
                return None
            return body if isinstance(body, dict) else None

        async def chat(request: Request) -> Any:
            body = await read_json(request)
            if body is None:
                return JSONResponse({"detail": "Invalid JSON"}, status_code=400)
            router._step(router._program_of(body))
            forward = {k: v for k, v in body.items() if k != "program_id"}
            if isinstance(forward.get("extra_body"), dict):
                extra = {k: v for k, v in forward["extra_body"].items() if k != "program_id"}
                if extra:
                    forward["extra_body"] = extra
                else:
                    del forward["extra_body"]
            status, raw, media_type = await post(
                router.engine_url + "/v1/chat/completions", forward
            )
            return Response(raw, status_code=status, media_type=media_type)

        async def generate(request: Request) -> Any:
            body = await read_json(request)
            if body is None:
                return JSONResponse({"detail": "Invalid JSON"}, status_code=400)
            router._step(router._program_of(body))
            url = router.engine_url + "/generate"
            try:
                status, raw, _ = await post(url, body)
                if status >= 400:
                    kind = "Client error" if status < 500 else "Server error"
                    phrase = HTTPStatus(status).phrase
                    raise RuntimeError(f"{kind} '{status} {phrase}' for url '{url}'")
                output = json.loads(raw)
            except Exception as exc:
                detail = f"Backend generate request failed: {exc}"
                return JSONResponse({"detail": detail}, status_code=502)
            return JSONResponse(output)

        async def list_programs(request: Request) -> Any:
            return JSONResponse(router.live())

        async def release(request: Request) -> Any:
            body = await read_json(request)
            program_id = body.get("program_id") if body else None
            if not program_id:
                return JSONResponse({"detail": "Missing program_id"}, status_code=400)
            program_id = str(program_id)
            with router._lock:
                router.release_calls[program_id] += 1
                known = router.programs.pop(program_id, None) is not None
                if known:
                    router.released[program_id] += 1
            return JSONResponse({"program_id": program_id, "released": known})

        async def health(request: Request) -> Any:
            return JSONResponse(
                {
                    "status": "ok",
                    "router_mode": "tr",
                    "backends": [router.engine_url],
                    "programs_count": len(router.live()),
                }
            )

        async def list_workers(request: Request) -> Any:
            return JSONResponse({"urls": [router.engine_url]})

        routes = [
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/programs", list_programs, methods=["GET"]),
            Route("/programs/release", release, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
        if self.build == "tool_improve":
            routes += [
                Route("/generate", generate, methods=["POST"]),
                Route("/list_workers", list_workers, methods=["GET"]),
            ]
        return Starlette(routes=routes)
