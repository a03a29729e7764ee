"""Start-up probe of a served policy's endpoint: is anything there, and does it speak the
protocol the policy will use?

Without it, an engine still loading (or a port held by some other program) shows up as every
episode failing, or worse, as a run against the wrong server. The probe is one GET: SGLang and its
router answer ``/get_model_info`` (newer builds also ``/model_info``); OpenAI-compatible servers
answer ``/models``. ``wait_s`` keeps trying while nothing answers, for an engine that is starting.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import ConfigError

PROBE_TIMEOUT_S = 5.0
RETRY_EVERY_S = 1.0


class _Unreachable(Exception):
    pass


def _get_json(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    """(HTTP status, parsed JSON body or None). Raises `_Unreachable` when nothing answers."""
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Unreachable(str(reason)) from None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def _probe_once(kind: str, url: str, config: EpisodeConfig) -> str | None:
    """None when the endpoint speaks `kind`; else why not. Raises `_Unreachable`."""
    base = url.rstrip("/")
    if kind == "sglang":
        paths = ["/get_model_info", "/model_info"]
        if config.thunderagent:  # ThunderAgent's router answers /health, not the model info
            paths.append("/health")
        seen = []
        for path in paths:
            status, body = _get_json(base + path, {})
            if 200 <= status < 300 and isinstance(body, dict):
                return None
            seen.append(f"GET {path} -> HTTP {status}")
        return f"it does not answer like an SGLang server ({'; '.join(seen)})"
    headers = {}
    if os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
    status, body = _get_json(base + "/models", headers)
    if isinstance(body, dict) and (200 <= status < 300 or status in (401, 403)):
        return None
    hint = ""
    if not base.endswith("/v1"):  # the usual slip: the server's root instead of its API base
        hint = f"; OpenAI-compatible servers usually serve under /v1: try openai:{base}/v1"
    return (
        f"it does not answer like an OpenAI-compatible server (GET /models -> HTTP {status}){hint}"
    )


def probe_policy_endpoint(config: EpisodeConfig, *, wait_s: float = 0.0) -> None:
    """Check the policy's endpoint before any episode; `ConfigError` naming the fix if it fails.

    Policies without an endpoint (the oracle, plugins) are not probed.
    """
    from tau_adapters.plugins import split_spec

    kind, url = split_spec(config.policy)
    if kind not in ("sglang", "openai") or not url:
        return
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        try:
            problem = _probe_once(kind, url, config)
        except _Unreachable as exc:
            if time.monotonic() + RETRY_EVERY_S <= deadline:
                time.sleep(RETRY_EVERY_S)
                continue
            waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
            raise ConfigError(
                f"policy endpoint {url} is not reachable{waited} ({exc}); start the engine, or "
                "pass --wait-ready SECONDS to wait for one that is starting"
            ) from None
        if problem is None:
            return
        raise ConfigError(
            f"policy endpoint {url}: {problem}. Is another program holding that port? "
            "Check the URL (--no-probe skips this check)"
        )


def probe_user_endpoint(config: EpisodeConfig) -> None:
    """Check the user simulator before any episode, as the policy's endpoint is checked.

    ``openai:URL``: one ``GET /models`` (nothing there, or not an OpenAI-compatible server, or a
    rejected key fails). ``litellm:MODEL``: the provider's key must be set (litellm's
    `validate_environment`), and an ``--user-api-base`` must answer. Without this, a typo in the
    URL shows up as every episode ending ``user_error``. Other users (scripted, plugins) have no
    endpoint to probe.
    """
    from tau_adapters.plugins import split_spec
    from tau_adapters.runtime.chat_endpoints import LiteLLMTransport
    from tau_adapters.users.transport import make_transport

    kind, arg = split_spec(config.user)
    if kind not in ("openai", "litellm"):
        return
    transport = make_transport(kind, arg, config)  # missing settings fail here, named
    skip = "--no-probe skips this check"
    if isinstance(transport, LiteLLMTransport):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download
        try:
            check = transport.litellm.validate_environment(
                model=transport.model, api_base=config.user_api_base
            )
        except Exception as exc:
            raise ConfigError(
                f"setting 'user': litellm does not know the model {transport.model!r} ({exc}); "
                "spell it as litellm does, e.g. openai/NAME or anthropic/NAME"
            ) from None
        missing = list(check.get("missing_keys") or [])
        if missing:
            raise ConfigError(
                f"setting 'user' ({config.user}): litellm needs {', '.join(missing)} in the "
                f"environment for {transport.model!r}; export it ({skip})"
            )
        base = config.user_api_base
        if not base:
            return
        setting = "--user-api-base ($TAU2_USER_API_BASE)"
    else:
        base = transport.base_url
        setting = "--user openai:URL ($TAU2_USER_API_BASE)"
    headers = {}
    if os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
    try:
        status, body = _get_json(base.rstrip("/") + "/models", headers)
    except _Unreachable as exc:
        raise ConfigError(
            f"user simulator endpoint {base} is not reachable ({exc}); start it, or fix "
            f"{setting} ({skip})"
        ) from None
    if status in (401, 403):
        raise ConfigError(
            f"user simulator endpoint {base} refused the key (GET /models -> HTTP {status}); "
            f"set OPENAI_API_KEY to a key it accepts ({skip})"
        )
    if not (200 <= status < 300 and isinstance(body, dict)):
        raise ConfigError(
            f"user simulator endpoint {base}: it does not answer like an OpenAI-compatible "
            f"server (GET /models -> HTTP {status}); check {setting}: the URL usually ends in /v1 "
            f"({skip})"
        )
