"""Task export rows in each host's dataset format (jsonl, slime, AReaL, SkyRL Parquet)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import benchmark_for
from tau_adapters.episode.tasks import TaskRef, task_refs
from tau_adapters.episode.text_episode import text_prompt, text_system_prompt
from tau_adapters.errors import ConfigError, UnknownNameError, install_hint

#: Row formats of `export_task_refs`.
EXPORT_FORMATS = ("jsonl", "slime", "areal", "skyrl")


def export_row(
    ref: TaskRef, fmt: str = "jsonl", *, parser: str | None = None, solo: bool = False
) -> dict[str, Any]:
    """One dataset row. ``slime``: ``input`` (the reference as text) and ``metadata`` (the
    reference), for slime's default ``--input-key input --metadata-key metadata``. ``areal``:
    the reference itself, the row `tau_adapters.areal` workflows read. ``skyrl``:
    SkyRL's columns ``data_source``, ``prompt``, ``env_class``, ``reward_spec``, ``extra_info``
    (the reference; SkyRL passes all but prompt and env_class to the env as ``extras``). The
    prompt is the system prompt the env's ``init()`` opens with (parser's call format and tool
    schemas included), so SkyRL's prompt-length filter measures what the model will see; with
    `solo`, tau2's solo prompt (the task's ticket, the user's tools and ``done``)."""
    if fmt == "slime":
        return {"input": f"{ref.domain}/{ref.split}/{ref.task_id}", "metadata": ref.to_row()}
    if fmt == "skyrl":
        if parser is None:
            parser = EpisodeConfig.from_env().parser
        env_class = benchmark_for(ref.domain).skyrl_env_class
        return {
            "data_source": f"{env_class}/{ref.domain}",
            "prompt": [{"role": "system", "content": _prompt(ref, parser, solo)}],
            "env_class": env_class,
            "reward_spec": {
                "method": f"{env_class}_official",
                "ground_truth": f"{ref.domain}/{ref.split}/{ref.task_id}",
            },
            "extra_info": ref.to_row(),
        }
    return ref.to_row()


def _prompt(ref: TaskRef, parser: str, solo: bool) -> str:
    if not solo:
        return text_system_prompt(ref.domain, parser)
    from tau_adapters.domains import get_domain

    system, _, tools = get_domain(ref.domain).solo_agent(ref.load())
    return text_prompt(system, tools, parser)


def export_task_refs(
    domains: Sequence[str] | str,
    split: str | None,
    output: Path,
    fmt: str = "jsonl",
    *,
    solo: bool = False,
) -> int:
    """Write one JSON line per task (format `fmt`; ``skyrl`` writes Parquet, which SkyRL loads
    with ``datasets.load_dataset("parquet", ...)``); returns how many."""
    if fmt not in EXPORT_FORMATS:
        raise UnknownNameError("export format", fmt, EXPORT_FORMATS)
    names = [domains] if isinstance(domains, str) else list(domains)
    refs = [ref for name in names for ref in task_refs(name, split, solo=solo)]
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "skyrl":
        _write_parquet([export_row(ref, fmt, solo=solo) for ref in refs], output)
        return len(refs)
    from tau_adapters.runtime.files import write_jsonl_atomic

    return write_jsonl_atomic(output, (export_row(ref, fmt) for ref in refs))


def _write_parquet(rows: list[dict[str, Any]], output: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "--format skyrl writes Parquet and needs pyarrow: pip install pyarrow, or "
            + install_hint("skyrl")
        ) from None
    from tau_adapters.runtime.files import atomic_open

    with atomic_open(output, "wb") as stream:
        pq.write_table(pa.Table.from_pylist(rows), stream)
