"""The judge of natural-language assertions, as tau2 v1.0.x grades them, over our own transport.

tau2 grades a task's ``nl_assertions`` in `tau2.evaluator.evaluator_nl_assertions`: it builds the
prompt (the whole transcript and the expected outcomes), calls the module global ``generate`` (a
synchronous litellm call to ``gpt-4.1``), and parses the JSON answer. We keep tau2's prompt and its
parsing and replace only the transport: ``generate`` in that module is rebound once, process-wide,
to `_generate`, which sends the request to the judge *bound in the calling context* (a
`contextvars.ContextVar` set by `Judge.bound()` around one scoring call). Two episodes scored at the
same time with different judges therefore never see each other's judge: the binding lives in the
scoring thread's context, not in a module global. With no judge bound, tau2's own ``generate`` runs,
so tau2 used directly elsewhere in the process behaves as before.

Scoring runs on a worker thread (`run_cpu`); the judge request itself is async (the pooled aiohttp
client, or litellm's ``acompletion``) and runs on the shared background loop while the worker
thread waits for it, so the host's event loop is never blocked. The transports are the user
simulator's (`tau_adapters.runtime.chat_endpoints`), told to speak as the "judge" and raise
`JudgeError`; requests are limited per endpoint here. Timeouts, connection errors, 429 and 5xx
are retried; any other failure (a 400, a rejected key, an unknown model) fails at once, on both
paths: the litellm path used to retry every exception, which only delayed the same answer by the
whole backoff. A judge that cannot answer (endpoint down after the last attempt, a non-retryable
error, a reply that is not the JSON tau2 expects) raises `JudgeError`: the episode ends
``failed`` with that reason, never with a reward of 0, as for the user simulator.

Specs, like the user simulator's: ``openai:URL`` (with `EpisodeConfig.judge_model_name`) for any
OpenAI-compatible endpoint, ``litellm:MODEL`` or a bare litellm model name (tau2's own spelling,
e.g. ``gpt-4.1-2025-04-14``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import EndpointError
from tau_adapters.runtime.chat_endpoints import ChatTransport, SettingNames, parse_endpoint_spec
from tau_adapters.runtime.http_client import RetryPolicy
from tau_adapters.runtime.scheduling import per_loop

T = TypeVar("T")


class JudgeError(EndpointError):
    """The judge gave no usable verdict: an infrastructure failure, never the model's zero."""


_ACTIVE: contextvars.ContextVar[Judge | None] = contextvars.ContextVar(
    "tau_adapters_nl_judge", default=None
)
_install_lock = threading.Lock()
_original_generate: Any = None

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def _strip_fences(text: str) -> str:
    """A JSON answer wrapped in a Markdown code fence, unwrapped (models do this unasked)."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


def check_verdict(text: str) -> str:
    """The judge's reply as tau2 will parse it, or `JudgeError` saying what is wrong with it.

    tau2 reads ``json.loads(content)["results"]`` and each result's ``expectedOutcome``,
    ``metExpectation`` and ``reasoning``; anything else would crash its evaluator with a
    ``KeyError`` or ``JSONDecodeError``: here it becomes a clear reason instead.
    """
    body = _strip_fences(text)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise JudgeError(f"judge reply is not JSON ({exc.msg}): {text[:200]!r}") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise JudgeError(f"judge reply has no 'results' list: {text[:200]!r}")
    for result in results:
        missing = [
            key
            for key in ("expectedOutcome", "metExpectation", "reasoning")
            if not isinstance(result, dict) or key not in result
        ]
        if missing:
            raise JudgeError(f"judge result lacks {', '.join(missing)}: {str(result)[:200]!r}")
    return body


class Judge:
    """One judge endpoint (per episode or re-scoring run); `bound()` makes it tau2's judge.

    It holds a `ChatTransport` (runtime's, which retries and raises `JudgeError`) and adds what
    is the judge's own: at most `concurrency` requests in flight per endpoint, an empty reply
    refused, and the usage totals a row reports.
    """

    def __init__(self, transport: ChatTransport, *, concurrency: int = 16) -> None:
        self.transport = transport
        self.concurrency = concurrency
        self.usage: dict[str, Any] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._usage_lock = threading.Lock()

    def describe(self) -> str:
        """The judge as rows record it, e.g. ``openai:http://host/v1 model=NAME``."""
        endpoint, model = self.transport.endpoint, self.transport.model
        if self.transport.kind == "openai":
            return f"openai:{endpoint} model={model}"
        return f"litellm:{model}" + (f" api_base={endpoint}" if endpoint else "")

    @contextlib.contextmanager
    def bound(self) -> Iterator[Judge]:
        """Make this the judge of tau2's NL-assertion evaluator for calls in this context."""
        install()
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    async def complete(self, messages: list[dict[str, Any]], **options: Any) -> str:
        """The judge's reply text for chat `messages` (retried; `JudgeError` when it gives up)."""
        key = ("nl-judge", self.transport.key, self.concurrency)
        limit = per_loop(key, lambda: asyncio.Semaphore(self.concurrency))
        async with limit:
            message, usage = await self.transport.complete({"messages": messages, **options})
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise JudgeError("judge returned an empty reply")
        with self._usage_lock:
            self.usage["calls"] += 1
            for name in ("prompt_tokens", "completion_tokens"):
                self.usage[name] += int(usage.get(name) or 0)
        return content


def _generate(model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
    """tau2's ``generate`` for the NL-assertion evaluator, sent to the judge bound in this context.

    ``model`` is tau2's default judge name and is ignored (the bound judge names its own model);
    ``call_name`` (v1.0.x) is accepted and dropped; ``temperature`` (tau2: 0.0) is passed on.
    """
    judge = _ACTIVE.get()
    if judge is None:  # not ours: tau2's own call, unchanged
        return _original_generate(model, messages, *args, **kwargs)
    from tau2.data_model.message import AssistantMessage

    from tau_adapters.runtime import background_loop

    options = {k: kwargs[k] for k in ("temperature", "max_tokens", "seed") if k in kwargs}
    chat = [{"role": str(m.role), "content": m.content or ""} for m in messages]
    text = background_loop.call(judge.complete(chat, **options))
    return AssistantMessage(role="assistant", content=check_verdict(text), cost=0.0)


#: Threads that score judged episodes: each mostly waits on its judge request, so they are kept
#: apart from the small CPU pool (`run_cpu`), whose threads must stay free for per-turn work.
JUDGED_SCORING_THREADS = 32


@functools.cache
def _judged_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=JUDGED_SCORING_THREADS, thread_name_prefix="tau-adapters-judged"
    )


if hasattr(os, "register_at_fork"):  # a forked child gets none of the parent's threads
    os.register_at_fork(after_in_child=_judged_executor.cache_clear)


async def run_judged(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`run_cpu` for a scoring step that waits on the judge: on its own thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_judged_executor(), functools.partial(fn, *args, **kwargs))


def install() -> None:
    """Rebind tau2's NL-assertion ``generate`` to `_generate` (once; idempotent, thread-safe)."""
    global _original_generate
    from tau2.evaluator import evaluator_nl_assertions

    with _install_lock:
        if evaluator_nl_assertions.generate is not _generate:
            _original_generate = evaluator_nl_assertions.generate
            evaluator_nl_assertions.generate = _generate


#: How the judge's endpoint settings are spelled, for the errors that name the fix.
JUDGE_SETTINGS = SettingNames(
    spec="--judge-model",
    model_name="--judge-model-name NAME ($TAU_ADAPTERS_JUDGE_MODEL_NAME)",
    api_base="--judge-api-base ($TAU_ADAPTERS_JUDGE_API_BASE)",
)


def make_judge(config: EpisodeConfig) -> Judge | None:
    """The judge `config` names (None when it names none); bad settings raise `ConfigError`."""
    spec = config.judge_model
    if not spec:
        return None
    kind, sep, arg = spec.partition(":")
    if not (sep and kind in ("openai", "litellm")):
        kind, arg = "litellm", spec  # a bare litellm model name (tau2's own spelling)
    api_base = config.judge_api_base
    endpoint = parse_endpoint_spec(
        kind,
        arg,
        model_name=config.judge_model_name,
        api_base=api_base.rstrip("/").removesuffix("/chat/completions") if api_base else None,
        names=JUDGE_SETTINGS,
    )
    retry = RetryPolicy(attempts=config.judge_attempts, timeout_s=config.judge_timeout_s)
    transport = endpoint.transport(retry, who="judge", error=JudgeError)
    return Judge(transport, concurrency=config.judge_concurrency)


__all__ = ["Judge", "JudgeError", "check_verdict", "install", "make_judge", "run_judged"]
