"""AReaL's configuration, translated: ``econfig``/``gconfig`` to our `EpisodeConfig` (with the
names of AReaL's own tau2 example), and the recipe's config class and dataset rows.

The recipe's config class lives in this importable module for a reason:

AReaL's single-controller mode (``scheduler.type: local``, how AReaL's own examples run) sends the
whole experiment config to every worker it starts (``/configure``), a dataclass named by its
import path (``module.QualName``); the worker imports that path to rebuild it. A class defined in
the script that runs as ``__main__`` cannot be imported there (the worker's ``__main__`` is
AReaL's RPC server), so the worker would get a plain dict and fail on ``config.seed``. Everything
a worker deserialises must live in an importable module like this one; `train_tau2` only runs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from areal.api.cli_args import GRPOConfig
from tau_adapters.config import EpisodeConfig
from tau_adapters.episode.tasks import TaskRef
from tau_adapters.errors import ConfigError
from tau_adapters.hosts.common import host_config
from tau_adapters.runtime.mappings import as_mapping

__all__ = [
    "ArealOptions",
    "Tau2GRPOConfig",
    "config_from_econfig",
    "task_ref_from_row",
    "task_rows",
]


@dataclass
class Tau2GRPOConfig(GRPOConfig):
    """AReaL's GRPO config plus ``econfig``: the tau2 episode (see `config_from_econfig`)."""

    econfig: dict[str, Any] = field(default_factory=dict)


def task_rows(path: str, at_least: int = 1) -> list[dict[str, Any]]:
    """The rows of an exported task file, repeated until there are `at_least` of them (so one
    batch can be filled from a small split)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no task rows (write it with `tau-adapters tasks export`)")
    while len(rows) < at_least:
        rows += rows[: at_least - len(rows)]
    return rows


ExportStyle = Literal["concat", "individual"]


@dataclass(frozen=True)
class ArealOptions:
    """What AReaL's side decides beyond the episode: sample layout and the trained reward."""

    export_style: ExportStyle = "concat"
    turn_discount: float = 1.0
    invalid_format_penalty: float = 0.0
    timeout_s: float | None = None
    #: Episodes per task run by one ``arun_episode`` and normalised together, leaving removed
    #: ones out (`tau_adapters.hosts.common.normalise_groups`); with it, AReaL's gconfig.n_samples is 1.
    group_size: int = 1
    group_std: bool = True


def _plain(value: Any) -> dict[str, Any]:
    """A dict from a mapping, a dataclass (AReaL's configs) or an OmegaConf node."""
    values = as_mapping(value)
    if values is None or isinstance(value, str):
        raise ConfigError(
            f"expected a mapping for the AReaL config block, got {type(value).__name__}"
        )
    return values


def config_from_econfig(
    econfig: Mapping[str, Any] | Any = None,
    *,
    gconfig: Any = None,
    tokenizer: Any = None,
    policy: str = "areal:engine",
    token_level: bool = True,
) -> tuple[EpisodeConfig, ArealOptions]:
    """The episode for an AReaL run from its yaml: ``econfig`` holds our `EpisodeConfig` names
    and/or the names of AReaL's tau2 example; ``gconfig`` gives temperature, top_p, the per-turn
    budget and the context length; ``tokenizer`` (AReaL's tokenizer or ``tokenizer_path``) is
    used when ``econfig`` names none."""
    values = _plain(econfig)
    # AReaL's example names: `solo_mode` and `add_thinking_tool` are `EpisodeConfig` names too,
    # so they pass through as they are; in solo mode the user settings are unused, as in AReaL.
    options = {
        "export_style": values.pop("export_style", "concat"),
        "turn_discount": float(values.pop("turn_discount", 1.0)),
        "invalid_format_penalty": float(values.pop("invalid_format_penalty", 0.0)),
        "timeout_s": values.pop("timeout", None),
        "group_size": int(values.pop("group_size", 1)),
        "group_std": bool(values.pop("group_std", True)),
    }
    if options["group_size"] > 1 and int(_plain(gconfig).get("n_samples") or 1) > 1:
        raise ConfigError(
            "econfig.group_size and gconfig.n_samples both ask for groups: with group_size set, "
            "set gconfig.n_samples: 1 (the workflow runs and normalises the group itself)"
        )
    if options["export_style"] not in ("concat", "individual"):
        raise ConfigError("econfig.export_style must be 'concat' or 'individual'")
    if not 0.0 < options["turn_discount"] <= 1.0:
        raise ConfigError("econfig.turn_discount must be in (0, 1]")
    user_llm = str(values.pop("user_llm", None) or "")
    base_url = values.pop("user_llm_base_url", None)
    if base_url:
        values.setdefault("user_api_base", base_url)
    if user_llm.startswith("openai/") and base_url:  # a served model: plain HTTP, no litellm
        values.setdefault("user", "openai")
        values.setdefault("user_model", user_llm.removeprefix("openai/"))
    elif user_llm:  # any other litellm model name
        values.setdefault("user", "litellm")
        values.setdefault("user_model", user_llm)
    user_args = dict(values.pop("user_llm_args", None) or {})
    if "temperature" in user_args:
        values.setdefault("user_temperature", user_args.pop("temperature"))
    for key in ("max_completion_tokens", "max_tokens"):
        if key in user_args:
            values.setdefault("user_max_tokens", user_args.pop(key))
    if user_args:
        values.setdefault("user_extra_body", user_args)
    g = _plain(gconfig)
    for key in ("temperature", "top_p", "max_new_tokens"):  # the same names on both sides
        if g.get(key) is not None:
            values.setdefault(key, g[key])
    path = tokenizer if isinstance(tokenizer, str) else getattr(tokenizer, "name_or_path", None)
    config = host_config(
        "AReaL",
        values,
        policy=policy,
        tokenizer=path or None,
        tokenizer_setting="tokenizer_path" if token_level else None,
        max_context_tokens=g.get("max_tokens"),
    )
    return config, ArealOptions(**options)


def task_ref_from_row(data: Mapping[str, Any], config: EpisodeConfig) -> TaskRef:
    """A dataset row ``{domain, split, task_id}`` (``tau-adapters tasks export --format
    areal``), or AReaL's tau2 example's ``{task_id, split}`` with the domain from ``econfig``."""
    return TaskRef.parse(
        data,
        default_domain=config.domain,
        default_split=config.split or "test",
        what="an AReaL data row",
        hint="write it with `tau-adapters tasks export --format areal`",
    )


def _areal_gconfig(gconfig: Any) -> Any:
    """AReaL's GenerationHyperparameters from the yaml's gconfig (a dataclass or a mapping)."""
    from areal.api.cli_args import GenerationHyperparameters

    if gconfig is None or isinstance(gconfig, GenerationHyperparameters):
        return gconfig
    known = GenerationHyperparameters.__dataclass_fields__
    return GenerationHyperparameters(**{k: v for k, v in _plain(gconfig).items() if k in known})
