"""Clients for inference engines: SGLang's native ``/generate`` (token ids in, token ids out) and
OpenAI-compatible ``/v1/chat/completions`` (text level)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tau_adapters.errors import ConfigError, EndpointError
from tau_adapters.runtime.http_client import DEFAULT_RETRY, RetryPolicy, post_json

if TYPE_CHECKING:
    from tau_adapters.agents.thunderagent import ProgramLease, ReleaseResult

ROUTING_HEADER = "X-SMG-Routing-Key"


@dataclass
class Generation:
    """One engine call: the sampled ids, their logprobs and why it stopped."""

    ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" | "length" | "abort"
    meta: dict[str, Any] = field(default_factory=dict)

    def top_p_tokens(self) -> tuple[list[int], list[int]] | None:
        """SGLang's top-p replay data for this call, if the request asked for it
        (``custom_params.return_top_p_token_ids``): kept token ids, and offsets with one more
        entry than sampled tokens (token i kept ``ids[offsets[i]:offsets[i + 1]]``)."""
        ids = _int32_array(self.meta, ("top_p_token_ids", "top_p_kept_token_ids"))
        offsets = _int32_array(self.meta, ("top_p_token_offsets", "top_p_kept_token_offsets"))
        if ids is None or offsets is None:
            return None
        if len(offsets) != len(self.ids) + 1 or offsets[0] != 0 or offsets[-1] != len(ids):
            raise EndpointError(
                f"top-p replay data does not match the {len(self.ids)} sampled tokens "
                f"({len(offsets)} offsets, {len(ids)} kept ids)"
            )
        return ids, offsets


def _int32_array(meta: dict[str, Any], keys: tuple[str, ...]) -> list[int] | None:
    """An int32 array from SGLang meta info: a list, raw bytes, or base64 of little-endian bytes."""
    import base64
    import sys
    from array import array

    value = next((meta[k] for k in keys if k in meta), None)
    if value is None:
        return None
    if isinstance(value, str):
        value = base64.b64decode(value.encode("ascii"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        out = array("i")
        out.frombytes(bytes(value))
        if sys.byteorder != "little":
            out.byteswap()
        return out.tolist()
    return [int(v) for v in value]


def _base_url(url: str, suffix: str) -> str:
    url = url.rstrip("/")
    return url[: -len(suffix)] if url.endswith(suffix) else url


class SGLangClient:
    """SGLang ``/generate`` with ``input_ids``, ``return_logprob``; optional router extras.

    - ``session_routing``: send the episode id in the ``X-SMG-Routing-Key`` header so that a
      consistent-hashing router keeps an episode on one engine (its prefix cache stays warm).
    - ThunderAgent: pass the episode's `ProgramLease` as ``program`` (it puts ``program_id`` in
      the payload; the policy releases it once the episode ends). ``thunderagent=True`` without a
      lease tags requests with the episode id (release is then the caller's, via `release`).
      Only ThunderAgent's tool_improve build with ``--enable-slime-adapter`` serves ``/generate``
      (see `tau_adapters.agents.thunderagent`).
    """

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        session_routing: bool = True,
        thunderagent: bool = False,
        extra_payload: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = _base_url(url, "/generate")
        self.retry = retry
        self.session_routing = session_routing
        self.thunderagent = thunderagent
        self.extra_payload = dict(extra_payload or {})

    async def generate(
        self,
        input_ids: list[int],
        sampling_params: dict[str, Any],
        *,
        episode_id: str | None = None,
        extra: dict[str, Any] | None = None,
        program: ProgramLease | None = None,
    ) -> Generation:
        payload: dict[str, Any] = {
            "input_ids": input_ids,
            "sampling_params": sampling_params,
            "return_logprob": True,
            "stream": False,
            **self.extra_payload,
            **(extra or {}),
        }
        headers: dict[str, str] = {}
        if episode_id is not None:
            if self.thunderagent and program is None:
                payload["program_id"] = episode_id
            if self.session_routing:
                headers[ROUTING_HEADER] = episode_id
        if program is not None:
            program.tag(payload)
        body = await post_json(
            self.base_url, "/generate", payload, headers=headers, retry=self.retry
        )
        if program is not None:
            program.answered()
        return parse_generate_response(body)

    async def release(self, episode_id: str) -> ReleaseResult:
        """ThunderAgent's program release, answer read; never raises."""
        from tau_adapters.agents.thunderagent import release_program

        return await release_program(self.base_url, episode_id)


def parse_generate_response(body: dict[str, Any]) -> Generation:
    """Read ids, logprobs and the finish reason from an SGLang ``/generate`` answer."""
    meta = body.get("meta_info")
    if not isinstance(meta, dict):
        raise EndpointError("SGLang answer has no meta_info", retryable=True)
    finish = meta.get("finish_reason")
    kind = finish.get("type") if isinstance(finish, dict) else finish
    kind = str(kind) if kind else "stop"
    entries = meta.get("output_token_logprobs")
    if isinstance(entries, list):
        try:
            ids = [int(entry[1]) for entry in entries]
            logprobs = [float(entry[0]) for entry in entries]
        except (TypeError, ValueError, IndexError) as exc:
            raise EndpointError(f"bad output_token_logprobs in SGLang answer: {exc}") from None
    elif kind == "abort":
        ids, logprobs = [], []  # an aborted call without logprobs: nothing trainable came back
    else:
        raise EndpointError(
            "SGLang answer has no output_token_logprobs: the engine must honour return_logprob"
        )
    if kind not in ("stop", "length", "abort"):
        kind = "stop"
    return Generation(ids, logprobs, kind, meta)


class OpenAIChatClient:
    """``POST {base}/chat/completions``; returns the parsed JSON answer."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.base_url = _base_url(base_url, "/chat/completions")
        self.api_key = api_key
        self.retry = retry

    async def complete(
        self, payload: dict[str, Any], *, program: ProgramLease | None = None
    ) -> dict[str, Any]:
        """One chat completion. With a ThunderAgent `program`, its ``program_id`` goes in the body
        (top level, where ThunderAgent's ``main`` reads it and strips it before the engine)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        if program is not None:
            payload = program.tag(dict(payload))
        body = await post_json(
            self.base_url, "/chat/completions", payload, headers=headers, retry=self.retry
        )
        if program is not None:
            program.answered()
        return body


async def shielded(coro: Any) -> Any:
    """Run `coro` to completion even if the caller is cancelled meanwhile."""
    return await asyncio.shield(asyncio.ensure_future(coro))


def require_url(name: str, arg: str | None) -> str:
    """The endpoint of a ``name:URL`` spec, or a `ConfigError` saying how to write it."""
    if not arg:
        raise ConfigError(f"policy {name!r} needs an endpoint: {name}:http://HOST:PORT")
    return arg
