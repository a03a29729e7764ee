"""tau-bench v1's user strategies (llm, react, verify, reflection) over our user-simulator transports.

The strategies are v1's own classes (`tau_bench.envs.user`): their prompts, their parsing of ReAct
answers, their verify/reflect loops. What changes is where their model calls go. v1 calls litellm's
synchronous ``completion`` (a module global of ``tau_bench.envs.user``); that name is replaced once,
process-wide, by a router. A call made from one of our episodes (marked by a context variable set on
the worker thread) goes through the episode's transport (litellm or a plain OpenAI-compatible
endpoint, with our retries, per-endpoint concurrency limit and usage accounting) on the host's
event loop; any other call goes to litellm exactly as before.

v1's code is synchronous, so each model call runs on a worker thread (its own pool, since these
threads mostly wait on the network) while the event loop stays free. Two v1 quirks are avoided:
v1's constructors already call the model once with no instruction (that answer is never used), so
the strategy object is created without its constructor; and v1's ``reset`` answers the fixed
greeting "Hi! How can I help you today?", which is the greeting the session opens with.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains.tau2.api import api
from tau_adapters.errors import ConfigError, EndpointError
from tau_adapters.users.cache import CachedTransport
from tau_adapters.users.fingerprint import PLACEHOLDER, user_fingerprint
from tau_adapters.users.transport import endpoint_limit, new_usage, record_usage

#: v1's strategy names (``UserStrategy`` values) and their classes in ``tau_bench.envs.user``.
STRATEGIES: dict[str, str] = {
    "llm": "LLMUserSimulationEnv",
    "react": "ReactUserSimulationEnv",
    "verify": "VerifyUserSimulationEnv",
    "reflection": "ReflectionUserSimulationEnv",
}

_route: contextvars.ContextVar[_Route | None] = contextvars.ContextVar(
    "tau1_user_route", default=None
)
_patch_lock = threading.Lock()
_original_completion: Any = None


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=256, thread_name_prefix="tau-adapters-tau1-user")


@dataclass
class _Message:
    content: str | None

    def model_dump(self) -> dict[str, Any]:
        return {"role": "assistant", "content": self.content or ""}


@dataclass
class _Choice:
    message: _Message


class _Response:
    """The parts of litellm's ``ModelResponse`` that v1's user code reads."""

    def __init__(self, content: str | None, cost: float) -> None:
        self.choices = [_Choice(_Message(content))]
        self._hidden_params = {"response_cost": cost}


class _Route:
    """Where one episode's v1 model calls go: its transport, on the host's event loop."""

    def __init__(self, user: Tau1User, loop: asyncio.AbstractEventLoop) -> None:
        self.user = user
        self.loop = loop

    def complete(self, messages: list[dict[str, Any]]) -> _Response:
        future = asyncio.run_coroutine_threadsafe(self.user._complete(messages), self.loop)
        retry = self.user.config
        limit = retry.user_timeout_s * retry.user_attempts + 60.0
        content, cost = future.result(timeout=limit)
        return _Response(content, cost)


def _routed_completion(*args: Any, **kwargs: Any) -> Any:
    route = _route.get()
    if route is None:
        return _original_completion(*args, **kwargs)
    return route.complete(list(kwargs["messages"]))


def _install_router(user_module: Any) -> None:
    global _original_completion
    with _patch_lock:
        if user_module.completion is not _routed_completion:
            _original_completion = user_module.completion
            user_module.completion = _routed_completion


def strategy_class(name: str) -> Any:
    """v1's class for a strategy name (``ConfigError`` naming the valid ones otherwise)."""
    if name not in STRATEGIES:
        raise ConfigError(
            f"setting 'user_strategy': {name!r} is not a tau-bench v1 user strategy; "
            f"valid: {', '.join(STRATEGIES)}"
        )
    from tau_adapters.domains.tau1.api import api1

    return getattr(api1().user_module, STRATEGIES[name])


def prompt_material(strategy: str, placeholder: str) -> str:
    """A strategy's system prompt (instruction left as `placeholder`) and the code that drives it
    (its class, and v1's verify/reflect supervisors, whose prompts live in functions): what the
    user fingerprint hashes for tau-bench v1."""
    cls = strategy_class(strategy)
    sim = object.__new__(cls)
    parts = [strategy, sim.build_system_prompt(instruction=placeholder)]
    module = inspect.getmodule(cls)
    for obj in (cls, getattr(module, "verify", None), getattr(module, "reflect", None)):
        if obj is not None:
            try:
                parts.append(inspect.getsource(obj))
            except (OSError, TypeError):  # no source on disk: the prompt alone
                parts.append(repr(obj))
    return "\n\0\n".join(parts)


class Tau1User:
    """A per-episode v1 user simulator (strategy from ``config.user_strategy``)."""

    def __init__(self, transport: Any, config: EpisodeConfig) -> None:
        self.transport = transport
        self.config = config
        self.strategy = config.user_strategy
        self._cls = strategy_class(self.strategy)
        self.usage: dict[str, Any] = new_usage(isinstance(transport, CachedTransport))
        if isinstance(transport, CachedTransport):
            transport.bind(self._fingerprint)
        self.seed: int | None = None
        self.fingerprint: dict[str, Any] | None = None
        self._sim: Any = None
        self._instruction: str | None = None
        #: v1's messages and cost before the call in flight (None between calls).
        self._settled: list[dict[str, Any]] | None = None
        self._settled_cost = 0.0

    async def start(self, context: Any, history: list[Any]) -> None:
        self.fingerprint = await self._fingerprint()
        self._build(context)

    def _build(self, context: Any) -> None:
        from tau_adapters.domains.tau1.api import api1

        _install_router(api1().user_module)
        cls = self._cls
        sim = object.__new__(cls)  # v1's constructor would call the model once, for nothing
        sim.model = self.transport.model
        sim.provider = None
        sim.total_cost = 0.0
        sim.messages = []
        attempts = inspect.signature(cls.__init__).parameters.get("max_attempts")
        if attempts is not None:
            sim.max_attempts = attempts.default
        self._sim = sim
        self._instruction = str(context.task.user_scenario.instructions)
        self.seed = context.seed

    async def _fingerprint(self) -> dict[str, Any]:
        return await user_fingerprint(
            getattr(self.transport, "inner", self.transport),
            self.config,
            "tau1",
            functools.partial(prompt_material, self.strategy, PLACEHOLDER),
        )

    def suspend_state(self) -> dict[str, Any]:
        """v1's conversation and cost (JSON). Every v1 strategy keeps only ``messages`` and
        ``total_cost`` between turns (model, provider and max_attempts are set by `start`). A
        call cut by the host leaves v1's list half-updated on a worker thread: the state from
        before that call is the one recorded."""
        settled = self._settled if self._settled is not None else self._sim.messages
        return {
            "kind": "tau1",
            "strategy": self.strategy,
            "sim_messages": [dict(m) for m in settled],
            "total_cost": self._settled_cost
            if self._settled is not None
            else float(self._sim.total_cost),
            "usage": dict(self.usage),
            "seed": self.seed,
            "fingerprint": self.fingerprint,
        }

    def restore(self, context: Any, state: dict[str, Any]) -> None:
        """Continue the conversation (in place of `start()`; no model call)."""
        if state.get("kind") != "tau1" or state.get("strategy") != self.strategy:
            raise ValueError(
                f"cannot restore a tau1 {self.strategy!r} user from "
                f"{state.get('kind')!r}/{state.get('strategy')!r} state"
            )
        self._build(context)
        self._sim.messages = [dict(m) for m in state["sim_messages"]]
        self._sim.total_cost = float(state["total_cost"])
        self.usage = dict(state["usage"])
        self.seed = state["seed"]
        self.fingerprint = state.get("fingerprint")

    async def respond(self, message: Any) -> Any:
        t = api()
        self._settled = [dict(m) for m in self._sim.messages]
        self._settled_cost = float(self._sim.total_cost)
        if self._sim.messages:
            text = await self._run(self._sim.step, message.content or "")
        else:
            text = await self._run(self._sim.reset, self._instruction)
        self._settled = None
        if not isinstance(text, str) or not text:
            raise EndpointError(f"user simulator returned no text: {text!r}")
        return t.UserMessage(role="user", content=text)

    async def _run(self, fn: Any, *args: Any) -> Any:
        route = _Route(self, asyncio.get_running_loop())

        def work() -> Any:
            token = _route.set(route)
            try:
                return fn(*args)
            finally:
                _route.reset(token)

        return await asyncio.get_running_loop().run_in_executor(_executor(), work)

    async def _complete(self, messages: list[dict[str, Any]]) -> tuple[str | None, float]:

        config = self.config
        payload: dict[str, Any] = {
            "messages": [{"role": m["role"], "content": m.get("content") or ""} for m in messages],
            "temperature": config.user_temperature,
            **({"seed": self.seed} if self.seed is not None else {}),
            **({"max_tokens": config.user_max_tokens} if config.user_max_tokens else {}),
            **config.user_extra_body,
        }
        async with endpoint_limit(self.transport.key, config.user_concurrency):
            reply, usage = await self.transport.complete(payload)
        cost = record_usage(self.usage, usage)
        return reply.get("content"), cost

    async def close(self) -> None:
        return None
