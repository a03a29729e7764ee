"""ThunderAgent (program-aware router for agentic rollouts): what the two real builds serve, a
start-up probe that says which one a URL is, and the per-episode program release.

ThunderAgent tracks each agent episode as a *program* (``program_id`` in the request body) so that
it can keep an episode's KV cache on one engine and pause/resume whole episodes under memory
pressure. A program exists from its first request until ``POST /programs/release``; one never
released is tracked forever. Two builds are in use (github.com/ThunderAgent-org/ThunderAgent):

- ``main``: ``POST /v1/chat/completions`` only (program_id as a top-level body field, stripped
  before the engine sees it). Works with the text-level ``openai:`` policy, not with ``sglang:``.
- ``tool_improve`` started with ``--enable-slime-adapter``: adds SGLang's ``POST /generate`` (the
  route slime's ThunderAgent example uses), which the token-level ``sglang:`` policy needs. Every
  engine failure behind it comes back as HTTP 502 ``{"detail": "Backend generate request failed:
  <httpx error>"}``; `tau_adapters.runtime.http_client` reads that detail to tell an engine's deterministic
  4xx (not retried) from a transient failure (retried).

Both serve ``GET /programs`` (the live programs), ``POST /programs/release {"program_id"}`` ->
``{"program_id", "released"}`` (``released: false``: the router did not know the program) and
``GET /health``. The probe uses only GET requests, so it never creates a program.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from tau_adapters.errors import ConfigError, EndpointError
from tau_adapters.runtime.http_client import RetryPolicy, get_json, post_json
from tau_adapters.runtime.logs import get_logger

log = get_logger("tau_adapters.agents.thunderagent")

Protocol = Literal["sglang", "openai"]

#: The start command of each build, for messages (ENGINE is the SGLang engine or router URL).
START_TOOL_IMPROVE = (
    "python -m ThunderAgent --backends ENGINE_URL --backend-type sglang --router tr "
    "--enable-slime-adapter --port 8300   (ThunderAgent's tool_improve branch)"
)
START_MAIN = (
    "python -m ThunderAgent --backends ENGINE_URL --backend-type sglang --router tr --port 8300"
)
RELEASE_RETRY = RetryPolicy(attempts=3, timeout_s=30.0)
_SUFFIXES = ("/generate", "/v1/chat/completions", "/chat/completions", "/v1")


def router_root(url: str) -> str:
    """The server root of a policy URL (``http://h:p/v1`` and ``http://h:p/generate`` ->
    ``http://h:p``): where ThunderAgent serves ``/programs``."""
    url = url.rstrip("/")
    for suffix in _SUFFIXES:
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


# -- the start-up probe ----------------------------------------------------------------------------
@dataclass
class RouterInfo:
    """What a policy URL serves, from GET requests only (``None``: could not tell)."""

    url: str
    reachable: bool
    thunderagent: bool = False
    has_generate: bool | None = None
    has_chat: bool | None = None
    programs: int | None = None
    health: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def build(self) -> str:
        """Which ThunderAgent build this is, in words (plain words when it is none)."""
        if not self.thunderagent:
            return "reachable"
        if self.has_generate:
            return "ThunderAgent with /generate (tool_improve, --enable-slime-adapter)"
        return (
            "ThunderAgent without /generate (main, or tool_improve without --enable-slime-adapter)"
        )

    def describe(self) -> str:
        if not self.reachable:
            return f"{self.url}: not reachable ({self.error})"
        extras = []
        if self.health.get("router_mode"):
            extras.append(f"router {self.health['router_mode']}")
        if self.health.get("backends"):
            extras.append(f"backends {', '.join(map(str, self.health['backends']))}")
        if self.programs is not None:
            extras.append(f"{self.programs} live programs")
        tail = f" ({'; '.join(extras)})" if extras else ""
        return f"{self.url}: {self.build}{tail}"


def _route_exists(status: int | None) -> bool | None:
    """A GET on a POST-only route: 405 (or a 4xx/2xx body) when the route exists, 404 when not."""
    if status is None:
        return None
    if status == 404:
        return False
    return status < 500


async def probe_router(url: str, *, timeout_s: float = 10.0) -> RouterInfo:
    """Ask `url`'s server what it is: ThunderAgent or not (``GET /programs`` answers a JSON object
    only on ThunderAgent), and whether ``/generate`` and ``/v1/chat/completions`` exist."""
    root = router_root(url)
    status, body = await get_json(root, "/programs", timeout_s=timeout_s)
    if status is None:
        return RouterInfo(root, reachable=False, error=str(body))
    info = RouterInfo(root, reachable=True)
    if status == 200 and isinstance(body, dict):
        info.thunderagent = True
        info.programs = len(body)
        health_status, health = await get_json(root, "/health", timeout_s=timeout_s)
        if health_status == 200 and isinstance(health, dict):
            info.health = health
    generate_status, _ = await get_json(root, "/generate", timeout_s=timeout_s)
    chat_status, _ = await get_json(root, "/v1/chat/completions", timeout_s=timeout_s)
    info.has_generate = _route_exists(generate_status)
    info.has_chat = _route_exists(chat_status)
    return info


def check_combination(info: RouterInfo, protocol: Protocol, *, thunderagent: bool) -> list[str]:
    """Raise `ConfigError` (with the fix) for a policy/router pair that cannot work; return the
    warnings for one that works but probably not as meant. Only positive evidence refuses: an
    unreachable URL, or a non-ThunderAgent server without the route, is a warning."""
    flag = "--thunderagent (TAU_ADAPTERS_THUNDERAGENT=1)"
    if not info.reachable:
        return [f"could not probe {info.describe()}; going on, episodes will fail if it stays down"]
    warnings: list[str] = []
    if protocol == "sglang" and info.has_generate is False:
        if info.thunderagent:
            raise ConfigError(
                f"the sglang: policy needs POST /generate, and {info.url} is {info.build}. "
                f"Either start ThunderAgent's tool_improve build with the slime adapter: "
                f"`{START_TOOL_IMPROVE}`, or use the text-level policy against this router: "
                f"--policy openai:{info.url}/v1 --model NAME {flag.split(' ')[0]}"
            )
        # Not ThunderAgent: a server may answer 404 to a GET on a POST-only route, so only warn.
        warnings.append(
            f"the sglang: policy needs POST /generate, and {info.url} answers 404 to GET /generate:"
            " is it an SGLang server or router?"
        )
    if protocol == "openai" and info.has_chat is False:
        if info.thunderagent:
            raise ConfigError(
                f"the openai: policy needs POST /v1/chat/completions, and {info.url} ({info.build})"
                " does not serve it"
            )
        warnings.append(
            f"the openai: policy needs POST /v1/chat/completions, and {info.url} answers 404 to a "
            "GET there: is it an OpenAI-compatible server?"
        )
    if thunderagent and not info.thunderagent:
        raise ConfigError(
            f"{flag} is set but {info.url} is not a ThunderAgent router (GET /programs gives no "
            f"program list). Point the policy at the router (`{START_MAIN}`, or for sglang: "
            f"`{START_TOOL_IMPROVE}`), or turn ThunderAgent off (drop --thunderagent, "
            "TAU_ADAPTERS_THUNDERAGENT=0)"
        )
    if info.thunderagent and not thunderagent:
        warnings.append(
            f"{info.url} is a ThunderAgent router but {flag} is off: every episode lands in its "
            "'default' program, which is never released. Add --thunderagent."
        )
    return warnings


_checked: dict[tuple[str, str, bool], RouterInfo | ConfigError] = {}


async def ensure_router(url: str, protocol: Protocol, *, thunderagent: bool) -> RouterInfo:
    """Probe once per process and (url, protocol, flag); log what the URL is; raise `ConfigError`
    for a combination that cannot work. Hosts call this before their first episode."""
    key = (router_root(url), protocol, thunderagent)
    known = _checked.get(key)
    if known is None:
        info = await probe_router(url)
        try:
            warnings = check_combination(info, protocol, thunderagent=thunderagent)
        except ConfigError as exc:
            known = exc
        else:
            known = info
            log.info("policy endpoint %s", info.describe())
            for warning in warnings:
                log.warning(warning)
        if info.reachable:  # an unreachable URL is probed again next time
            _checked[key] = known
    if isinstance(known, ConfigError):
        raise ConfigError(str(known))
    return known


def forget_probes() -> None:
    """Drop the probe results (tests that start servers on reused ports)."""
    _checked.clear()


def policy_protocol(policy_spec: str) -> tuple[Protocol, str] | None:
    """(protocol, url) of a served policy spec (``sglang:URL``, ``openai:URL``), else None."""
    name, _, arg = policy_spec.partition(":")
    if name in ("sglang", "openai") and arg.startswith(("http://", "https://")):
        return name, arg  # type: ignore[return-value]
    return None


# -- per-episode release --------------------------------------------------------------------------
ReleaseOutcome = Literal["released", "not_registered", "failed", "not_sent"]

#: Trajectory ``counts`` keys, one per outcome that reached the router.
COUNT_KEYS: dict[str, str] = {
    "released": "program_released",
    "not_registered": "program_not_registered",
    "failed": "program_release_failed",
}


@dataclass
class ReleaseResult:
    outcome: ReleaseOutcome
    detail: str = ""

    def counts(self) -> dict[str, int]:
        """The trajectory counts of this release: all three keys, the outcome's set to 1."""
        if self.outcome == "not_sent":
            return {}
        return {key: int(outcome == self.outcome) for outcome, key in COUNT_KEYS.items()}


async def release_program(
    url: str, program_id: str, *, retry: RetryPolicy = RELEASE_RETRY
) -> ReleaseResult:
    """``POST /programs/release`` and read the answer. Never raises: the episode's outcome is
    already known; a release that fails is logged and counted, not fatal."""
    root = router_root(url)
    try:
        body = await post_json(root, "/programs/release", {"program_id": program_id}, retry=retry)
    except EndpointError as exc:
        log.warning("ThunderAgent program %s not released: %s", program_id, exc)
        return ReleaseResult("failed", str(exc))
    released = body.get("released")
    if released is True:
        return ReleaseResult("released")
    if released is False:
        log.warning(
            "ThunderAgent at %s answered released=false for program %s: it did not know the "
            "program (router restarted, or no request of the episode reached it)",
            root,
            program_id,
        )
        return ReleaseResult("not_registered", "released: false")
    log.warning("unexpected answer to /programs/release from %s: %r", root, body)
    return ReleaseResult("failed", f"unexpected answer {body!r}"[:300])


class ProgramLease:
    """One episode's ThunderAgent program: the id tagged onto each request and one release.

    Release is skipped when no request was ever sent (the router never heard of the program). When
    the last request was interrupted (cancelled or failed mid-flight), the router may register the
    program just after our release arrives; a ``released: false`` then gets one more try a moment
    later so that no program is left behind."""

    def __init__(self, url: str, program_id: str, *, recheck_delay_s: float = 1.0) -> None:
        self.url = url
        self.program_id = program_id
        self.requests = 0
        self.interrupted = False
        self.result: ReleaseResult | None = None
        self.recheck_delay_s = recheck_delay_s

    def tag(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Put ``program_id`` in a request body (top level: both builds read it there)."""
        self.requests += 1
        self.interrupted = True  # until the answer is back
        payload["program_id"] = self.program_id
        return payload

    def answered(self) -> None:
        self.interrupted = False

    async def release(self) -> ReleaseResult:
        if self.result is not None:  # exactly once
            return self.result
        self.result = ReleaseResult("not_sent")
        if self.requests == 0:
            return self.result
        result = await release_program(self.url, self.program_id)
        if result.outcome == "not_registered" and self.interrupted:
            await asyncio.sleep(self.recheck_delay_s)
            result = await release_program(self.url, self.program_id)
        self.result = result
        return result

    def counts(self) -> dict[str, int]:
        return self.result.counts() if self.result is not None else {}
