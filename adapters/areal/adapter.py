"""AReaL types <-> tau-adapters episodes. No episode logic here: see `tau_adapters.episode.rollout`."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from tau_adapters.areal.config import (
    ArealOptions,
    ExportStyle,
    _areal_gconfig,
    _plain,
    config_from_econfig,
    task_ref_from_row,
)

from areal.api.workflow_api import RolloutWorkflow
from tau_adapters.agents.engines import Generation
from tau_adapters.episode.tasks import TaskRef
from tau_adapters.errors import ConfigError, EndpointError
from tau_adapters.hosts.common import (
    GroupMembers,
    member_trial,
    rollout_within,
    run_group,
    should_remove,
    training_reward,
)
from tau_adapters.runtime.logs import get_logger

log = get_logger("tau_adapters.areal")


class ArealEngineClient:
    """The core token policy's engine interface over AReaL's engine: each model turn is one
    ``engine.agenerate(ModelRequest(...))``; the weight version of every sampled token is kept
    per turn (``versions``), in the order the transcript's model spans are appended."""

    def __init__(self, engine: Any, gconfig: Any = None) -> None:
        from areal.api.cli_args import GenerationHyperparameters

        self.engine = engine
        self.gconfig = gconfig if gconfig is not None else GenerationHyperparameters()
        self.versions: list[list[int]] = []

    async def generate(
        self, input_ids: list[int], sampling: dict[str, Any], *, episode_id: Any = None, **_: Any
    ) -> Generation:
        from areal.api.io_struct import ModelRequest

        gconfig = self.gconfig.new(
            n_samples=1,
            max_new_tokens=int(sampling["max_new_tokens"]),
            temperature=float(sampling["temperature"]),
            top_p=float(sampling["top_p"]),
            stop_token_ids=list(sampling["stop_token_ids"]),
            skip_special_tokens=False,
            greedy=False,
        )
        # One rid per episode: AReaL keeps an rid on one server, so its prefix cache stays warm.
        request = ModelRequest(
            rid=episode_id or uuid.uuid4().hex, input_ids=input_ids, gconfig=gconfig
        )
        try:
            response = await self.engine.agenerate(request)
        except Exception as exc:  # AReaL gave up (its own retries): the episode ends failed
            raise EndpointError(f"AReaL engine: {type(exc).__name__}: {str(exc)[:300]}") from None
        reason = {"length": "length", "abort": "abort"}.get(response.stop_reason, "stop")
        self.versions.append(list(response.output_versions))
        return Generation(list(response.output_tokens), list(response.output_logprobs), reason)

    async def release(self, episode_id: str) -> bool:
        return False


def trajectory_tensors(
    trajectory: Any, versions: list[list[int]], reward: float, options: ArealOptions
) -> dict[str, Any]:
    """AReaL's trajectory dict (batch dimension first). ``concat``: one row for the episode.
    ``individual``: one row per model turn, its context then its sampled tokens (the only ones
    in its loss mask, logprobs and versions), its reward discounted by ``turn_discount`` per
    later turn, as AReaL's own individual export does."""
    import torch

    transcript = trajectory.transcript
    prompt = transcript.prompt_len
    ids = torch.tensor(transcript.ids.tolist(), dtype=torch.int32)
    mask = torch.zeros(len(ids), dtype=torch.int32)
    mask[prompt:] = torch.tensor(transcript.loss_mask.tolist(), dtype=torch.int32)
    logprobs = torch.zeros(len(ids), dtype=torch.float32)
    logprobs[prompt:] = torch.tensor(transcript.logprobs.tolist(), dtype=torch.float32)
    tokens_version = torch.full((len(ids),), -1, dtype=torch.int32)
    spans = [s for s in transcript.spans if s.kind == "model"]
    for span, turn in zip(spans, versions, strict=False):
        if len(turn) == span.end - span.start:
            tokens_version[span.start : span.end] = torch.tensor(turn, dtype=torch.int32)

    def row(end: int, start: int, value: float) -> dict[str, Any]:
        keep = torch.zeros(end, dtype=torch.bool)
        keep[start:end] = True
        return {
            "input_ids": ids[None, :end].clone(),
            "logprobs": torch.where(keep, logprobs[:end], 0.0)[None],
            "loss_mask": torch.where(keep, mask[:end], 0)[None],
            "versions": torch.where(keep, tokens_version[:end], -1)[None],
            "rewards": torch.tensor([value], dtype=torch.float32),
            "attention_mask": torch.ones((1, end), dtype=torch.bool),
        }

    if options.export_style == "concat" or not spans:
        return row(len(ids), 0, reward)
    from areal.utils.data import concat_padded_tensors

    discount, last = options.turn_discount, len(spans) - 1
    rows = [row(s.end, s.start, reward * discount ** (last - k)) for k, s in enumerate(spans)]
    return concat_padded_tensors(rows)


def _verdict(trajectory: Any, ref: TaskRef, options: ArealOptions, member: int = 0) -> float | None:
    """The training reward, or None where the removal policy drops the episode (AReaL cannot
    retry a sample, so an aborted one is dropped too); logged in AReaL's stats tracker."""
    try:
        from areal.infra import workflow_context

        evaluation = bool(workflow_context.get().is_eval)
    except Exception:  # outside AReaL's executor: a training episode
        evaluation = False
    removed = should_remove(trajectory, evaluation=evaluation, drop_aborted=True)
    reward = training_reward(trajectory, format_penalty=options.invalid_format_penalty)
    try:
        from areal.infra import workflow_context
        from areal.utils import stats_tracker

        stats_tracker.get(workflow_context.stat_scope()).scalar(
            reward=reward,
            official_reward=float(trajectory.reward),
            num_turns=int(trajectory.counts.get("agent_turns", 0)),
            removed=float(removed),
            group_member=float(member),
        )
    except Exception:  # no stats scope outside AReaL's executor
        pass
    if not removed:
        return reward
    why = f"{trajectory.status}: {trajectory.error}"
    log.warning(
        "tau2 episode %s/%s (trial %d, group member %d) left out of training (%s)",
        ref.domain,
        ref.task_id,
        trajectory.trial,
        member,
        why,
    )
    return None


class Tau2Workflow(RolloutWorkflow):
    """Engine mode: one token-level tau2 episode per ``arun_episode``, every model turn a call of
    AReaL's inference engine. Returns AReaL's tensor dict, or ``None`` for an episode the removal
    policy drops (`tau_adapters.hosts.common.should_remove`): infrastructure failures never train as 0.

    ``on_trajectory`` (optional) receives each finished core `Trajectory` (messages, reward_info,
    transcript), e.g. to write ``trajectories.jsonl`` for ``tau-adapters report``."""

    def __init__(
        self,
        econfig: Mapping[str, Any] | Any = None,
        gconfig: Any = None,
        tokenizer: Any = None,
        *,
        export_style: ExportStyle | None = None,
        on_trajectory: Callable[[Any], None] | None = None,
    ) -> None:
        from tau_adapters.agents.token_policy import template_for

        settings = _plain(econfig)
        if export_style is not None:
            settings["export_style"] = export_style
        self.config, self.options = config_from_econfig(
            settings, gconfig=gconfig, tokenizer=tokenizer
        )
        self.gconfig = _areal_gconfig(gconfig)
        self.on_trajectory = on_trajectory
        self.template = template_for(self.config)  # loads now: a bad tokenizer fails at start-up
        #: AReaL's own groups (gconfig.n_samples): its grouped workflow calls arun_episode
        #: n_samples times with the same row and no index; the members are numbered here.
        self.members = GroupMembers(int(getattr(self.gconfig, "n_samples", 1) or 1))

    def _group_key(self, data: dict[str, Any]) -> Any:
        """Which AReaL group this call belongs to: the executor's task id (one per submitted
        row, seen by every member through AReaL's context variable), else the row object."""
        try:
            from areal.infra import workflow_context

            task_id = workflow_context.get().task_id
        except Exception:  # outside AReaL's executor
            task_id = None
        return ("task", task_id) if task_id is not None else ("row", id(data))

    async def arun_episode(self, engine: Any, data: dict[str, Any]) -> dict[str, Any] | None:
        # First, before any await: AReaL starts a group's calls together and their synchronous
        # starts run in member order, which is what numbers them (`GroupMembers`).
        member = self.members.next(self._group_key(data))
        base = int(data.get("trial", 0))
        size = self.options.group_size
        if size == 1:
            one = await self._episode(engine, data, member_trial(base, member), member)
            return None if one is None else trajectory_tensors(*one[0], one[1], self.options)
        kept = await run_group(
            lambda k: self._episode(engine, data, member_trial(base, k), k),
            size,
            use_std=self.options.group_std,
        )
        if not kept:
            return None
        from areal.utils.data import concat_padded_tensors

        return concat_padded_tensors(
            [trajectory_tensors(*run, value, self.options) for run, value in kept]
        )

    async def _episode(self, engine: Any, data: dict[str, Any], trial: int, member: int = 0) -> Any:
        """One episode: ((trajectory, per-turn weight versions), training reward), or None."""
        from tau_adapters.agents.token_policy import TokenPolicy

        ref = task_ref_from_row(data, self.config)
        config = self.config.model_copy(update={"domain": ref.domain, "split": ref.split})
        client = ArealEngineClient(engine, self.gconfig)
        policy = TokenPolicy("areal://engine", config, template=self.template, client=client)
        task = await asyncio.to_thread(ref.load)  # a domain's first load parses its files
        trajectory = await rollout_within(
            task, config, policy, trial=trial, split=ref.split, timeout_s=self.options.timeout_s
        )
        if self.on_trajectory is not None:
            self.on_trajectory(trajectory)
        reward = _verdict(trajectory, ref, self.options, member)
        if reward is None or trajectory.transcript is None or not trajectory.transcript.ids:
            return None
        return (trajectory, client.versions), reward


class Tau2Agent:
    """Proxy (agent) mode: ``async run(data, **extra_kwargs) -> float`` for AReaL's OpenAI-proxy
    workflows, inline or in a subprocess (picklable; reads ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY`` when ``base_url``/``api_key`` are not passed). Text level: the proxy
    tokenizes, so use `Tau2Workflow` for token-exact training.

    ``run`` never raises. A kept episode returns its training reward as a float. An episode the
    removal policy drops returns ``None``: AReaL 1.0.4's proxy workflow then rejects the sample
    (its "Invalid reward type" check), the only rejection its agent mode has, so no
    infrastructure failure trains as a 0.0. Constructor arguments are those of AReaL's
    ``Tau2AgentWorkflow`` (``econfig``, ``gen_args``, ``timeout``)."""

    def __init__(
        self,
        econfig: Mapping[str, Any] | Any = None,
        gen_args: Mapping[str, Any] | None = None,
        timeout: float | None = 600.0,
    ) -> None:
        gen = dict(gen_args or {})
        if "max_completion_tokens" in gen:
            gen["max_new_tokens"] = gen.pop("max_completion_tokens")
        settings = {"timeout": timeout, "model": "default", **_plain(econfig)}
        self.config, self.options = config_from_econfig(
            settings, gconfig=gen, policy="openai:areal-proxy", token_level=False
        )

    async def run(self, data: dict[str, Any], **extra_kwargs: Any) -> float | None:
        from tau_adapters.agents.chat_policy import OpenAIChatPolicy
        from tau_adapters.agents.engines import OpenAIChatClient
        from tau_adapters.runtime.http_client import RetryPolicy

        try:
            base_url = extra_kwargs.get("base_url") or os.environ.get("OPENAI_BASE_URL")
            api_key = extra_kwargs.get("api_key") or os.environ.get("OPENAI_API_KEY")
            if not base_url:
                raise ConfigError("no proxy address: AReaL passes base_url or OPENAI_BASE_URL")
            ref = task_ref_from_row(data, self.config)
            config = self.config.model_copy(update={"domain": ref.domain, "split": ref.split})
            retry = RetryPolicy(
                attempts=config.request_attempts, timeout_s=config.request_timeout_s
            )
            client = OpenAIChatClient(base_url, api_key=api_key, retry=retry)
            policy = OpenAIChatPolicy(base_url, config, client=client)
            task = await asyncio.to_thread(ref.load)
            trial = int(data.get("trial", 0))
            trajectory = await rollout_within(
                task, config, policy, trial=trial, split=ref.split, timeout_s=self.options.timeout_s
            )
            return _verdict(trajectory, ref, self.options)
        except Exception as exc:  # a bad row or a broken setup: reject, never raise into AReaL
            log.error("tau2 agent episode could not run: %r", exc)
            return None
