"""A real HTTP engine on loopback that speaks SGLang's ``/generate`` and OpenAI's chat protocol
(and vLLM's ``/inference/v1/generate``, ``/detokenize``, ``/finish_session``, which SkyRL's
``RemoteInferenceClient`` uses).

It stands in for a GPU inference engine (which cannot run here) and is used by the tests and for
offline development: ``python -m tau_adapters.testing --port 30000``. Behind it is `TinyLM`, a tiny
random model that samples for real and returns real logprobs, or, for overhead benchmarks, a
``canned`` continuation function that answers instantly.

Extensions over SGLang's protocol, for tests only:
- ``"forced_output_ids": [...]`` in a ``/generate`` body makes the engine emit exactly those tokens
  (teacher forcing, still with the model's logprobs), so a test can drive a scripted episode
  through the real token path.
- `fault_policy(endpoint, body)` may return a `Fault` to inject delays, HTTP errors, dropped
  connections, malformed JSON or ``abort`` finish reasons.

Like SGLang it can be interrupted (issue 23): with a `Lognormal` ``latency`` each ``/generate``
emits its tokens over a drawn duration, and ``POST /abort_request`` (``{"rid": ...}`` or
``{"abort_all": true}``) makes the requests in flight answer at once with the tokens emitted so
far and ``finish_reason {"type": "abort"}``. ``GET /v1/loads`` reports the requests running and
waiting, ``GET /workers`` lists this engine (slime's ``abort()`` reads both),
``POST /pause_generation`` aborts what runs and holds new requests until
``POST /continue_generation`` (what AReaL calls around a weight update). A continued request
reproduces the uninterrupted tokens: the tiny model samples with a generator keyed by
(``sampling_seed``, absolute position), as SGLang's seeded sampler does, and a ``canned`` or
teacher-forced answer cut by an abort is kept and served to the request that continues it (its
``input_ids`` are the old ones plus the emitted tokens).

Like a real engine it knows nothing of ThunderAgent programs (it counts the ``program_id`` fields it
is sent, which real SGLang ignores): put `tau_adapters.testing.router.LoopbackRouter`, or the real
router, in front of it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Fault:
    """What to do to one request: ``delay`` (then answer), ``status`` (HTTP error), ``drop``
    (cut the connection mid-body), ``malformed`` (invalid JSON), ``abort`` (SGLang abort after
    ``tokens`` emitted tokens; half of them when None)."""

    kind: str
    seconds: float = 0.0
    status: int = 500
    tokens: int | None = None


@dataclass
class Lognormal:
    """Heavy-tailed generation time: a request that emits n tokens takes
    ``D = median_s * exp(sigma * Z)`` seconds (plus ``per_token_s * n``), token i becoming
    available at ``D * (i + 1) / n``.

    ``Z`` is a standard normal drawn from a generator keyed by (``seed``, the request's
    ``sampling_seed``, ``len(input_ids)``): the same episode turn takes the same time in every
    run, whatever the order requests arrive in. sigma 0 gives a fixed latency; sigma 1.0 puts
    the 99th percentile ~10x above the median (the long tail of tau2 turns).
    """

    median_s: float
    sigma: float = 1.0
    seed: int = 0
    per_token_s: float = 0.0

    def duration(self, input_ids: list[int], params: dict[str, Any], n_tokens: int) -> float:
        import math
        import random

        key = params.get("sampling_seed", params.get("seed"))
        z = random.Random(f"{self.seed}:{key}:{len(input_ids)}").gauss(0.0, 1.0)
        return self.median_s * math.exp(self.sigma * z) + self.per_token_s * n_tokens


@dataclass
class _Flight:
    """One ``/generate`` request being emitted (abortable)."""

    rid: str
    n_tokens: int
    duration: float
    started: float
    aborted: asyncio.Event


FaultPolicy = Callable[[str, dict[str, Any]], "Fault | None"]


class LoopbackServer:
    """A Starlette app (`app()`) served by uvicorn on a loopback port in a background thread."""

    host = "127.0.0.1"
    port = 0
    _server: Any = None
    _thread: threading.Thread | None = None

    def app(self) -> Any:  # pragma: no cover - subclasses build their routes
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, port: int = 0) -> Any:
        """Listen on `port` (0: any free one); a taken port fails with a message saying so."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"cannot listen on {self.host}:{port}: {exc.strerror or exc} "
                "(another program holds the port? pick another --port)",
            ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Any:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LoopbackEngine(LoopbackServer):
    """SGLang-protocol server backed by a tiny model, running in a background thread."""

    def __init__(
        self,
        tokenizer: Any = None,
        *,
        style: str = "chatml",
        seed: int = 0,
        model: Any = None,
        canned: Callable[[list[int], dict[str, Any]], list[int]] | None = None,
        turn_tokens: int | None = None,
        latency: Lognormal | None = None,
        default_seed: int | None = None,
    ) -> None:
        """`turn_tokens`: end every sampled turn with its stop token after that many tokens (a
        random model never ends a turn by itself, so without it each turn runs to its cap)."""
        from tau_adapters.tokens.local_tokenizer import build_tokenizer

        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(style)
        self.canned = canned
        self.turn_tokens = turn_tokens
        if model is None and canned is None:
            from tau_adapters.testing.model import TinyLM

            model = TinyLM(len(self.tokenizer), seed=seed)
        self.model = model
        self.fault_policy: FaultPolicy | None = None
        #: The model name ``GET /v1/models`` and ``/get_model_info`` report (tests change it to
        #: stand for a new model behind the same endpoint).
        self.served_model = "tau-adapters-tiny"
        #: Every chat request body, in arrival order (what a user simulator asked).
        self.chat_log: list[dict[str, Any]] = []
        self.chat_responder: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
        self.requests: Counter[str] = Counter()
        self.program_ids: Counter[str] = Counter()
        self.routing_keys: Counter[str] = Counter()
        self._template: Any = None
        self._banned: list[int] | None = None
        self.latency = latency
        #: The sampling seed of requests that name none (AReaL sends none): reproducible runs.
        self.default_seed = default_seed
        #: Tokens returned by ``/generate`` (``emitted``) and, of those, in aborted answers.
        self.tokens: Counter[str] = Counter()
        #: Every ``/generate`` body received, in order (tests read continuation requests).
        self.generate_log: list[dict[str, Any]] = []
        self._flights: dict[str, _Flight] = {}
        self._continuations: dict[tuple[int, ...], Any] = {}
        self._waiting = 0
        self._paused = False
        self._resumed: asyncio.Event | None = None

    # -- interruption ------------------------------------------------------------------------------
    def abort(self, rid: str | None = None) -> int:
        """Abort one request (by ``rid``) or all in flight; returns how many were told. Must run
        on the server's loop (the HTTP routes do); tests call the route."""
        told = 0
        for flight in list(self._flights.values()):
            if rid is None or flight.rid == rid:
                flight.aborted.set()
                told += 1
        return told

    def _keep_continuation(self, input_ids: list[int], sampled: Any, cut: int) -> None:
        """Remember the rest of an answer cut at `cut` tokens for the request that continues it
        (canned and teacher-forced answers cannot be re-derived from a seed)."""
        from tau_adapters.testing.model import Sampled

        rest = Sampled(sampled.ids[cut:], sampled.logprobs[cut:], sampled.finish, sampled.matched)
        self._continuations[tuple(input_ids) + tuple(sampled.ids[:cut])] = rest
        if len(self._continuations) > 4096:  # bounded: the oldest go first
            self._continuations.pop(next(iter(self._continuations)))

    # -- generation --------------------------------------------------------------------------------
    def _generate(
        self, input_ids: list[int], params: dict[str, Any], forced: Any, body: dict[str, Any]
    ) -> Any:
        from tau_adapters.testing.model import Sampled

        max_new = int(params.get("max_new_tokens", 128))
        stop_ids = list(params.get("stop_token_ids") or [])
        if not params.get("ignore_eos") and self.tokenizer.eos_token_id is not None:
            stop_ids.append(self.tokenizer.eos_token_id)
        if self.canned is not None:
            ids = list(self.canned(input_ids, body))[:max_new]
            finish = "stop" if ids and ids[-1] in stop_ids else "length"
            return Sampled(ids, [0.0] * len(ids), finish, ids[-1] if finish == "stop" else None)
        end_after = end_token = None
        if self.turn_tokens is not None and stop_ids and max_new > 1:
            end_after, end_token = min(self.turn_tokens, max_new - 1), stop_ids[0]
        return self.model.sample(
            input_ids,
            max_new_tokens=max_new,
            temperature=float(params.get("temperature", 1.0)),
            top_p=float(params.get("top_p", 1.0)),
            top_k=int(params.get("top_k", -1)),
            stop_ids=stop_ids,
            seed=params.get("sampling_seed", params.get("seed", self.default_seed)),
            forced=forced,
            banned=params.get("banned_ids") or (),
            end_after=end_after,
            end_token=end_token,
        )

    async def _emit(
        self, rid: str, input_ids: list[int], params: dict[str, Any], n_tokens: int
    ) -> int | None:
        """Spend the request's drawn duration, abortable: the number of tokens emitted when an
        abort (or a pause) arrived, or None when it ran to the end."""
        duration = self.latency.duration(input_ids, params, n_tokens) if self.latency else 0.0
        loop = asyncio.get_running_loop()
        flight = _Flight(rid, n_tokens, duration, loop.time(), asyncio.Event())
        self._flights[rid] = flight
        try:
            if duration <= 0:
                await asyncio.sleep(0)  # one loop turn: an abort already queued still lands
                return 0 if flight.aborted.is_set() else None
            try:
                await asyncio.wait_for(flight.aborted.wait(), timeout=duration)
            except asyncio.TimeoutError:
                return None
            elapsed = loop.time() - flight.started
            if elapsed >= duration:
                return None  # every token was out: the request finished, as SGLang's would
            return min(n_tokens - 1, int(n_tokens * elapsed / duration))
        finally:
            self._flights.pop(rid, None)

    # -- HTTP --------------------------------------------------------------------------------------
    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        engine = self

        async def read_body(request: Request) -> dict[str, Any]:
            try:
                body = await request.json()
            except Exception:
                body = None
            return body if isinstance(body, dict) else {}

        async def apply_fault(endpoint: str, body: dict[str, Any]) -> Any:
            fault = engine.fault_policy(endpoint, body) if engine.fault_policy else None
            if fault is None:
                return None
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
                return None
            if fault.kind == "status":
                return JSONResponse({"error": "injected fault"}, status_code=fault.status)
            if fault.kind == "malformed":
                return Response(b'{"meta_info": {"finish_reason": ', media_type="application/json")
            if fault.kind == "drop":
                return _DroppedResponse()
            return fault  # abort: handled by the endpoint

        async def generate(request: Request) -> Any:
            body = await read_body(request)
            engine.requests["generate"] += 1
            key = request.headers.get("x-smg-routing-key")
            if key:
                engine.routing_keys[key] += 1
            if "program_id" in body:
                engine.program_ids[str(body["program_id"])] += 1
            early = await apply_fault("generate", body)
            if early is not None and not isinstance(early, Fault):
                return early
            input_ids = body.get("input_ids")
            if input_ids is None and isinstance(body.get("text"), str):
                input_ids = engine.tokenizer.encode(body["text"], add_special_tokens=False)
            if not isinstance(input_ids, list) or not input_ids:
                return JSONResponse({"error": "input_ids required"}, status_code=400)
            params = body.get("sampling_params") or {}
            forced = body.get("forced_output_ids")
            engine.generate_log.append(body)
            rid = str(body.get("rid") or uuid.uuid4().hex)
            if engine._paused:  # held until /continue_generation, as SGLang's paused scheduler
                engine._waiting += 1
                try:
                    while engine._paused:
                        assert engine._resumed is not None
                        await engine._resumed.wait()
                finally:
                    engine._waiting -= 1
            kept = engine._continuations.pop(tuple(input_ids), None)
            if kept is not None:
                from tau_adapters.testing.model import Sampled

                max_new = int(params.get("max_new_tokens", 128))
                sampled = Sampled(
                    kept.ids[:max_new],
                    kept.logprobs[:max_new],
                    kept.finish if len(kept.ids) <= max_new else "length",
                    kept.matched if len(kept.ids) <= max_new else None,
                )
            elif engine.canned is not None:  # instant: answer on the loop, no thread hop
                sampled = engine._generate(input_ids, params, forced, body)
            else:
                sampled = await asyncio.to_thread(engine._generate, input_ids, params, forced, body)
            replayable = kept is not None or engine.canned is not None or forced is not None
            cut: int | None = None
            if isinstance(early, Fault) and early.kind == "abort":
                cut = len(sampled.ids) // 2 if early.tokens is None else early.tokens
                cut = max(0, min(cut, len(sampled.ids)))
                message = "injected abort"
            else:
                cut = await engine._emit(rid, input_ids, params, len(sampled.ids))
                message = "Abort in the middle of generation (abort_request)"
            finish: dict[str, Any]
            if cut is not None:
                if replayable and cut < len(sampled.ids):
                    engine._keep_continuation(input_ids, sampled, cut)
                sampled.ids, sampled.logprobs = sampled.ids[:cut], sampled.logprobs[:cut]
                finish = {"type": "abort", "message": message}
                engine.tokens["aborted"] += len(sampled.ids)
            elif sampled.finish == "stop":
                finish = {"type": "stop", "matched": sampled.matched}
            else:
                finish = {"type": "length", "length": len(sampled.ids)}
            meta: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "finish_reason": finish,
                "prompt_tokens": len(input_ids),
                "completion_tokens": len(sampled.ids),
                "cached_tokens": 0,
                "rid": rid,
            }
            engine.tokens["emitted"] += len(sampled.ids)
            custom = params.get("custom_params") or {}
            if isinstance(custom, dict) and custom.get("return_top_p_token_ids"):
                # Stand-in nucleus: each sampled token alone (the format is what is exercised).
                meta["top_p_token_ids"] = list(sampled.ids)
                meta["top_p_token_offsets"] = list(range(len(sampled.ids) + 1))
            if body.get("return_logprob"):
                meta["output_token_logprobs"] = [
                    [lp, tok, None] for lp, tok in zip(sampled.logprobs, sampled.ids, strict=True)
                ]
            text = engine.tokenizer.decode(sampled.ids, skip_special_tokens=False)
            return JSONResponse({"text": text, "output_ids": sampled.ids, "meta_info": meta})

        async def chat(request: Request) -> Any:
            body = await read_body(request)
            engine.requests["chat"] += 1
            engine.chat_log.append(body)
            if "program_id" in body:
                engine.program_ids[str(body["program_id"])] += 1
            early = await apply_fault("chat", body)
            if early is not None and not isinstance(early, Fault):
                return early
            scripted = engine.chat_responder(body) if engine.chat_responder else None
            if scripted is not None:
                message, usage = scripted, {"prompt_tokens": 0, "completion_tokens": 0}
                finish = "tool_calls" if scripted.get("tool_calls") else "stop"
            else:
                message, usage, finish = await asyncio.to_thread(engine._chat, body)
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            return JSONResponse(
                {
                    "id": "chatcmpl-" + uuid.uuid4().hex,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "tiny"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )

        async def health(request: Request) -> Any:
            return JSONResponse({"status": "ok"})

        async def model_info(request: Request) -> Any:
            return JSONResponse({"model_path": engine.served_model, "is_generation": True})

        async def models(request: Request) -> Any:
            engine.requests["models"] += 1
            return JSONResponse(
                {"object": "list", "data": [{"id": engine.served_model, "object": "model"}]}
            )

        # vLLM's token-in/token-out protocol, as SkyRL's RemoteInferenceClient calls it.
        async def vllm_generate(request: Request) -> Any:
            body = await read_body(request)
            engine.requests["vllm_generate"] += 1
            early = await apply_fault("vllm_generate", body)
            if early is not None and not isinstance(early, Fault):
                return early
            input_ids = body.get("token_ids")
            if not isinstance(input_ids, list) or not input_ids:
                return JSONResponse({"error": "token_ids required"}, status_code=400)
            given = body.get("sampling_params") or {}
            params = {
                "max_new_tokens": given.get("max_tokens") or 128,
                "temperature": given.get("temperature", 1.0),
                "top_p": given.get("top_p", 1.0),
                "top_k": given.get("top_k", -1),
                "seed": given.get("seed"),
                "stop_token_ids": given.get("stop_token_ids") or [],
                "ignore_eos": given.get("ignore_eos", False),
            }
            sampled = await asyncio.to_thread(engine._generate, input_ids, params, None, body)
            choice: dict[str, Any] = {
                "index": 0,
                "token_ids": sampled.ids,
                "finish_reason": "stop" if sampled.finish == "stop" else "length",
                "logprobs": None,
            }
            if given.get("logprobs") is not None:
                choice["logprobs"] = {"content": [{"logprob": lp} for lp in sampled.logprobs]}
            return JSONResponse({"id": uuid.uuid4().hex, "choices": [choice]})

        async def detokenize(request: Request) -> Any:
            body = await read_body(request)
            tokens = body.get("tokens") or []
            return JSONResponse({"prompt": engine.tokenizer.decode(tokens)})

        async def finish_session(request: Request) -> Any:
            engine.requests["finish_session"] += 1
            return JSONResponse({})

        async def abort_request(request: Request) -> Any:
            body = await read_body(request)
            engine.requests["abort_request"] += 1
            rid = None if body.get("abort_all") else body.get("rid")
            if rid is None and not body.get("abort_all"):
                return JSONResponse({"error": "rid or abort_all required"}, status_code=400)
            return JSONResponse({"aborted": engine.abort(None if rid is None else str(rid))})

        async def loads(request: Request) -> Any:
            return JSONResponse(
                {"num_running_reqs": len(engine._flights), "num_waiting_reqs": engine._waiting}
            )

        async def workers(request: Request) -> Any:
            return JSONResponse({"workers": [{"url": engine.url}]})

        async def pause_generation(request: Request) -> Any:
            engine.requests["pause_generation"] += 1
            if engine._resumed is None:
                engine._resumed = asyncio.Event()
            engine._resumed.clear()
            engine._paused = True
            engine.abort(None)
            return JSONResponse({})

        async def continue_generation(request: Request) -> Any:
            engine.requests["continue_generation"] += 1
            engine._paused = False
            if engine._resumed is not None:
                engine._resumed.set()
            return JSONResponse({})

        return Starlette(
            routes=[
                Route("/inference/v1/generate", vllm_generate, methods=["POST"]),
                Route("/detokenize", detokenize, methods=["POST"]),
                Route("/finish_session", finish_session, methods=["POST"]),
                Route("/abort_request", abort_request, methods=["POST"]),
                Route("/v1/loads", loads, methods=["GET"]),
                Route("/workers", workers, methods=["GET"]),
                Route("/pause_generation", pause_generation, methods=["POST"]),
                Route("/continue_generation", continue_generation, methods=["POST"]),
                Route("/generate", generate, methods=["POST"]),
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/health", health, methods=["GET"]),
                Route("/get_model_info", model_info, methods=["GET"]),
                Route("/model_info", model_info, methods=["GET"]),
                Route("/v1/models", models, methods=["GET"]),
            ]
        )

    def _chat_banned_ids(self) -> list[int]:
        """Special and whitespace-only tokens: a chat reply made of them reads as empty (a greedy
        random model repeats one of them forever), and a user simulator fails on empty replies."""
        if self._banned is None:
            keep = {self.tokenizer.eos_token_id}
            blank = {
                i
                for i in range(len(self.tokenizer))
                if not self.tokenizer.decode([i], skip_special_tokens=True).strip()
            }
            self._banned = sorted((blank | set(self.tokenizer.all_special_ids)) - keep)
        return self._banned

    def _chat(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int], str]:
        from tau_adapters.parsers.base import HermesParser
        from tau_adapters.tokens.chat_template import ChatTemplate

        if self._template is None:
            self._template = ChatTemplate(self.tokenizer)
        messages = body.get("messages") or []
        ids = self._template.prompt_ids(messages, body.get("tools"))
        params = {
            "max_new_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or 64,
            "temperature": body.get("temperature", 1.0),
            "top_p": body.get("top_p", 1.0),
            "seed": body.get("seed"),
            # Special tokens decode to nothing: a reply made of them (a greedy random model's
            # favourite) would be empty, and a user simulator would fail on it.
            "banned_ids": self._chat_banned_ids(),
        }
        sampled = self._generate(ids, params, None, body)
        visible = sampled.ids[:-1] if sampled.finish == "stop" else sampled.ids
        parsed = HermesParser().parse(self.tokenizer.decode(visible, skip_special_tokens=True))
        message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
        if parsed.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c in parsed.tool_calls
            ]
        finish = (
            "length"
            if sampled.finish == "length"
            else ("tool_calls" if parsed.tool_calls else "stop")
        )
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(sampled.ids)}
        return message, usage, finish


class _DroppedResponse:
    """An ASGI response that promises a body and hangs up half way (a dropped connection)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"text": "', "more_body": False})
