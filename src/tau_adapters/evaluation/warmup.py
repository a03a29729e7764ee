"""Warm-up data from eval runs: supervised traces and rejection-sampled sets (`tau-adapters export`).

A run folder already holds every episode with tau2's messages, the reward and, at token level, the
exact ids the engine saw. This module turns selected episodes into the rows the hosts' SFT paths
read, so that a warm-up before RL trains on what the policy actually saw:

- ``sft``: the conversation in OpenAI chat format as the policy saw it (system prompt with the
  domain policy, the greeting, user/assistant/tool turns) plus the tool schemas, and a ``metadata``
  block with the task reference, reward and run provenance. From a text-level run (an OpenAI-
  compatible policy, the oracle) assistant tool calls are structured ``tool_calls`` with JSON-object
  arguments, the form Hugging Face chat templates render. From a token-level run each model turn is
  the text the policy sampled (its tool calls in the parser's format, as the system prompt asks),
  so the host's chat template re-renders the kept tokens.
- ``sft-tokens``: the kept token ids of a token-level episode with a loss mask that is 1 exactly on
  the tokens the policy sampled, so SFT trains on the tokens RL will later see.

Selection is rejection sampling: official reward at least ``min_reward``, status in ``statuses``, at
most ``per_task`` episodes per task (best reward first, then the shortest), optional de-duplication
of identical conversations. Episodes with rejected (unparseable) model turns are never exported: the
policy saw an error for a turn that is not in tau2's message list, so no clean trace exists.

The output is written to a temporary file and renamed at the end: a bad input never leaves a
half-written file, and an existing output is refused unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tau_adapters.errors import ConfigError

FORMATS = ("sft", "sft-tokens")
ORACLE_NOTE = "synthetic demonstration: the oracle replayed the gold actions, no model"


class SkipEpisode(Exception):
    """An episode that cannot give a clean trace; the argument is the reason counted."""


@dataclass
class Run:
    """One eval run folder: its rows and the configuration it ran with."""

    path: Path
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    versions: dict[str, Any]


@dataclass
class ExportSummary:
    """What was read, kept and written, per domain."""

    output: Path
    fmt: str
    written: int = 0
    read: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    tasks_seen: dict[str, set] = field(default_factory=lambda: defaultdict(set))
    tasks_with_trace: dict[str, set] = field(default_factory=lambda: defaultdict(set))
    skipped: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "format": self.fmt,
            "written": self.written,
            "skipped": dict(self.skipped),
            "domains": {
                domain: {
                    "episodes_read": self.read[domain],
                    "exported": self.kept[domain],
                    "tasks_seen": len(self.tasks_seen[domain]),
                    "tasks_with_trace": len(self.tasks_with_trace[domain]),
                }
                for domain in sorted(self.read)
            },
        }


def load_run(path: Path) -> Run:
    """A run folder (or its trajectories.jsonl); `ConfigError` names what is wrong."""
    from tau_adapters.evaluation.run_folder import SUMMARY_FILE, TRAJECTORIES_FILE, read_rows

    folder = path.parent if path.is_file() else path
    trajectories = path if path.is_file() else path / TRAJECTORIES_FILE
    if not trajectories.is_file():
        raise ConfigError(f"{path}: no {TRAJECTORIES_FILE} (is it an `eval --output` folder?)")
    rows = read_rows(trajectories)
    for number, row in enumerate(rows, 1):
        missing = [k for k in ("domain", "task_id", "messages", "status", "reward") if k not in row]
        if missing:
            raise ConfigError(f"{trajectories}:{number}: missing field(s) {', '.join(missing)}")
    config: dict[str, Any] = {}
    versions: dict[str, Any] = {}
    summary_path = folder / SUMMARY_FILE
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{summary_path}: not valid JSON ({exc.msg})") from None
        config = dict(summary.get("config") or {})
        versions = {k: summary.get(k) for k in ("tau_adapters_version", "tau2_version")}
    return Run(path=folder, rows=rows, config=config, versions=versions)


def _conversation_length(row: dict[str, Any]) -> int:
    transcript = row.get("transcript")
    if transcript:
        return len(transcript.get("ids") or [])
    return len(row.get("messages") or [])


def select(
    rows: Sequence[tuple[Run, dict[str, Any]]],
    *,
    min_reward: float,
    statuses: Sequence[str],
    per_task: int | None,
) -> list[tuple[Run, dict[str, Any]]]:
    """Rejection sampling: reward and status filters, then the best ``per_task`` per task
    (highest official reward first, then the shortest conversation; ties keep input order)."""
    wanted = set(statuses)
    passing = [
        (run, row)
        for run, row in rows
        if row.get("status") in wanted
        and row.get("reward") is not None
        and float(row["reward"]) >= min_reward
    ]
    if per_task is None:
        return passing
    by_task: dict[tuple[str, str], list[tuple[int, Run, dict[str, Any]]]] = defaultdict(list)
    for order, (run, row) in enumerate(passing):
        by_task[(str(row["domain"]), str(row["task_id"]))].append((order, run, row))
    chosen: list[tuple[int, Run, dict[str, Any]]] = []
    for group in by_task.values():
        group.sort(
            key=lambda item: (-float(item[2]["reward"]), _conversation_length(item[2]), item[0])
        )
        chosen.extend(group[:per_task])
    chosen.sort(key=lambda item: item[0])
    return [(run, row) for _, run, row in chosen]


def agent_setup(row: dict[str, Any], domain: Any) -> tuple[str, list[dict[str, Any]]]:
    """The agent's system prompt and tool schemas for a row's episode (solo: tau2's solo prompt
    with the task's ticket, the user's tools and ``done``; the think tool where it was offered)."""
    if row.get("solo_mode"):
        system, _, tools = domain.solo_agent(domain.task(str(row["task_id"])))
    else:
        system, tools = domain.agent_system_prompt(), list(domain.tool_schemas)
    if row.get("thinking_tool"):
        from tau_adapters.episode.session import with_think_tool

        tools = with_think_tool(tools, domain.name, len(domain.tool_schemas))
    return system, tools


def _system_text(run: Run, row: dict[str, Any], domain: Any) -> tuple[str, Any]:
    """The system prompt exactly as the episode's policy saw it (and the template, token level)."""
    base, tools = agent_setup(row, domain)
    if not row.get("token_level"):
        return base, None
    from tau_adapters.agents.token_policy import system_text, template_for
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.plugins import make_parser

    names = {"tokenizer", "chat_template", "chat_template_kwargs", "parser"}
    settings = {k: v for k, v in run.config.items() if k in names and v is not None}
    if not settings.get("tokenizer"):
        raise ConfigError(
            f"{run.path}: a token-level run without `tokenizer` in summary.json config; "
            "the system prompt cannot be rebuilt"
        )
    config = EpisodeConfig.build(domain=domain.name, **settings)
    template = template_for(config)
    context = SimpleNamespace(system_prompt=base, tools=tools)
    return system_text(context, make_parser(config.parser), template), template


def chat_conversation(run: Run, row: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """[system, *what the agent saw] in chat format, ending with the last assistant turn."""
    from tau_adapters.domains import get_domain, resolve_domain
    from tau_adapters.episode.session import agent_visible
    from tau_adapters.tokens.chat_messages import to_chat

    domain = get_domain(resolve_domain(str(row["domain"]))[0])
    try:
        messages = domain.tau2.message_adapter().validate_python(row["messages"])
    except Exception as exc:
        raise ConfigError(f"messages are not tau2 messages: {exc}") from None
    system, template = _system_text(run, row, domain)
    chat = [{"role": "system", "content": system}]
    visible = [_as_sampled(m, domain) for m in messages if agent_visible(m)]
    if row.get("solo_mode") and run.config.get("solo_ticket_as_user"):
        ticket = domain.task(str(row["task_id"])).ticket
        visible.insert(0, domain.tau2.UserMessage(role="user", content=str(ticket)))
    if not domain.agent_sees_greeting and visible and _is_greeting(visible[0], domain):
        visible = visible[1:]  # tau-bench v1's agent never sees the greeting
    chat += to_chat(visible)
    if template is not None:
        _use_sampled_text(chat, row["transcript"], template)
    while chat and chat[-1]["role"] != "assistant":
        chat.pop()  # trailing user/tool turns carry no training signal
    return chat, template


def _as_sampled(message: Any, domain: Any) -> Any:
    """A solo stop turn as the model wrote it (its ``done`` call), not tau2's rewrite of it."""
    raw = getattr(message, "raw_data", None) or {}
    calls = raw.get("solo_stop_calls") if isinstance(raw, dict) else None
    if not calls:
        return message
    tool_calls = [domain.tau2.ToolCall(**call) for call in calls]
    return message.model_copy(
        update={"content": raw.get("solo_stop_content"), "tool_calls": tool_calls}
    )


def _is_greeting(message: Any, domain: Any) -> bool:
    return message.role == "assistant" and message.content == domain.tau2.FIRST_AGENT_MESSAGE


def _use_sampled_text(
    chat: list[dict[str, Any]], transcript: dict[str, Any], template: Any
) -> None:
    """Token level: each model turn's content becomes the text the policy sampled (tool calls in
    the parser's own format, reasoning included), so the host's template re-renders the kept
    tokens; the opening assistant turns (the greeting, a task's history) stay as they are."""
    spans = [(start, end) for kind, start, end in transcript["spans"] if kind == "model"]
    turns = [i for i, message in enumerate(chat) if message["role"] == "assistant"]
    if len(spans) > len(turns):
        raise SkipEpisode("model_turns_mismatch")
    ids = transcript["ids"]
    for index, (start, end) in zip(turns[len(turns) - len(spans) :], spans, strict=True):
        sampled = ids[start:end]
        if sampled and sampled[-1] in template.stop_ids:
            sampled = sampled[:-1]
        chat[index] = {"role": "assistant", "content": template.decode(sampled)}


def _metadata(run: Run, row: dict[str, Any]) -> dict[str, Any]:
    policy = run.config.get("policy") or row.get("policy")
    meta = {
        "domain": row["domain"],
        "split": row.get("split"),
        "task_id": str(row["task_id"]),
        "trial": row.get("trial"),
        "seed": row.get("seed"),
        "reward": float(row["reward"]),
        "status": row.get("status"),
        "termination_reason": row.get("termination_reason"),
        "run": str(run.path),
        "policy": policy,
        "model": run.config.get("model"),
        "user": run.config.get("user"),
        **run.versions,
    }
    if policy == "oracle":
        meta["synthetic"] = ORACLE_NOTE
    return meta


def sft_row(run: Run, row: dict[str, Any]) -> dict[str, Any]:
    """One ``sft`` row: ``messages``, ``tools``, ``metadata``."""
    from tau_adapters.domains import get_domain, resolve_domain

    messages, _ = chat_conversation(run, row)
    _, tools = agent_setup(row, get_domain(resolve_domain(str(row["domain"]))[0]))
    return {"messages": messages, "tools": tools, "metadata": _metadata(run, row)}


def sft_tokens_row(run: Run, row: dict[str, Any]) -> dict[str, Any]:
    """One ``sft-tokens`` row: ``input_ids`` and a full-length ``loss_mask`` (prompt part 0)."""
    transcript = row.get("transcript")
    if not transcript or not transcript.get("ids"):
        raise ConfigError("not a token-level episode (no `transcript`); use --format sft")
    ids = list(transcript["ids"])
    prompt_len = int(transcript["prompt_len"])
    response_mask = list(transcript["loss_mask"])
    if len(response_mask) != len(ids) - prompt_len:
        raise ConfigError(
            f"transcript has {len(ids)} ids, prompt_len {prompt_len} and "
            f"{len(response_mask)} loss-mask entries (expected {len(ids) - prompt_len})"
        )
    mask = [0] * prompt_len + [int(bool(m)) for m in response_mask]
    return {"input_ids": ids, "loss_mask": mask, "metadata": _metadata(run, row)}


def _fingerprint(exported: dict[str, Any]) -> str:
    body = exported.get("input_ids") or exported.get("messages")
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def export(
    runs: Sequence[Path],
    output: Path,
    *,
    fmt: str = "sft",
    min_reward: float = 1.0,
    statuses: Sequence[str] = ("completed",),
    per_task: int | None = None,
    dedupe: bool = False,
    overwrite: bool = False,
) -> ExportSummary:
    """Select episodes from ``runs`` and write them to ``output`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if per_task is not None and per_task < 1:
        raise ConfigError(f"--per-task must be at least 1 (got {per_task})")
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} exists; pass --overwrite to replace it")
    if output.exists() and not output.is_file():
        raise ConfigError(f"{output} is not a file")
    from tau_adapters.evaluation.run_folder import TRAJECTORIES_FILE

    loaded = [load_run(Path(path)) for path in runs]
    for run in loaded:  # never write over an input: its transcripts would be lost
        if output.resolve() == (run.path / TRAJECTORIES_FILE).resolve():
            raise ConfigError(f"--output {output} is an input file; write to another path")
    summary = ExportSummary(output=output, fmt=fmt)
    pairs = []
    for run in loaded:
        for row in run.rows:
            domain = str(row["domain"])
            summary.read[domain] += 1
            summary.tasks_seen[domain].add(str(row["task_id"]))
            if row.get("counts", {}).get("rejected_turns"):
                summary.skipped["rejected_turns"] += 1
                continue
            if fmt == "sft-tokens" and not row.get("transcript"):
                summary.skipped["not_token_level"] += 1
                continue
            pairs.append((run, row))
    chosen = select(pairs, min_reward=min_reward, statuses=statuses, per_task=per_task)
    summary.skipped["reward_or_status_or_per_task"] += len(pairs) - len(chosen)
    make = sft_row if fmt == "sft" else sft_tokens_row
    seen: set[str] = set()
    lines = []
    for run, row in chosen:
        try:
            exported = make(run, row)
        except SkipEpisode as skip:
            summary.skipped[str(skip)] += 1
            continue
        except ConfigError as exc:
            where = f"{run.path}: {row['domain']} task {row['task_id']} trial {row.get('trial')}"
            raise ConfigError(f"{where}: {exc}") from None
        if dedupe:
            key = _fingerprint(exported)
            if key in seen:
                summary.skipped["duplicate"] += 1
                continue
            seen.add(key)
        domain = str(row["domain"])
        summary.kept[domain] += 1
        summary.tasks_with_trace[domain].add(str(row["task_id"]))
        lines.append(json.dumps(exported, ensure_ascii=False))
    _write_atomically(output, lines)
    summary.written = len(lines)
    return summary


def _write_atomically(output: Path, lines: list[str]) -> None:
    parent = output.parent if str(output.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            for line in lines:
                stream.write(line + "\n")
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
