"""Checks that run before the first episode, so a wrong name fails the run, not every episode.

Each check raises `ConfigError` (exit 2 on the CLI) naming the setting, the valid values and,
for a near miss, the closest one. They are cheap: names are looked up in the plugin registries;
nothing is built or connected.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping

from tau_adapters.config import ENV_PREFIX, EpisodeConfig
from tau_adapters.errors import ConfigError, UnknownNameError

#: ``TAU_ADAPTERS_*`` variables that are not `EpisodeConfig` fields but are read somewhere.
OTHER_ENV_VARS: dict[str, str] = {
    "TAU_ADAPTERS_CPU_THREADS": "threads for per-turn CPU work (positive integer, default 4)",
    "TAU_ADAPTERS_TEST_ASSETS": "tests: folder of real tokenizer/template assets",
    "TAU_ADAPTERS_SHARED": "CI: folder of shared wheels and assets",
    "TAU_ADAPTERS_TAU1_PARITY": "tests: 'full' checks v1 scoring parity on every task",
    "TAU_ADAPTERS_THUNDERAGENT_MAIN_PYTHON": "tests: a Python with ThunderAgent main installed",
    "TAU_ADAPTERS_THUNDERAGENT_TOOL_IMPROVE_PYTHON": (
        "tests: a Python with ThunderAgent tool_improve installed"
    ),
    "TAU_ADAPTERS_REQUIRE_THUNDERAGENT": "CI: router builds whose tests must run, not skip",
}


def close_matches(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(valid), n=n, cutoff=0.6)


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Unknown ``TAU_ADAPTERS_*`` variables and a bad ``TAU_ADAPTERS_CPU_THREADS`` fail here.

    A misspelt variable would otherwise be ignored silently and the run would use the default.
    """
    environ = os.environ if environ is None else environ
    known = {ENV_PREFIX + field.upper() for field in EpisodeConfig.model_fields} | set(
        OTHER_ENV_VARS
    )
    problems = []
    for var in sorted(v for v in environ if v.startswith(ENV_PREFIX)):
        if var in known:
            continue
        near = close_matches(var, known)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        problems.append(f"unknown environment variable {var}{hint}")
    threads = environ.get("TAU_ADAPTERS_CPU_THREADS")
    if threads is not None:
        try:
            ok = int(threads) >= 1
        except ValueError:
            ok = False
        if not ok:
            problems.append(
                f"TAU_ADAPTERS_CPU_THREADS must be a positive integer (got {threads!r}); "
                "unset it for the default of 4"
            )
    if problems:
        valid = ", ".join(sorted(known))
        raise ConfigError(
            "bad environment:\n  "
            + "\n  ".join(problems)
            + f"\nvalid TAU_ADAPTERS_* names: {valid}"
        )


def _check(kind: str, name: str, valid: Iterable[str], setting: str) -> None:
    if name not in valid:
        error = UnknownNameError(kind, name, sorted(valid))
        raise ConfigError(f"{error} (setting: {setting})")


def check_names(config: EpisodeConfig, *, check_policy: bool = True) -> None:
    """Policy, user simulator, tool-call parser and reward shaper names exist (the policy only
    where it is looked up by name: a host that brings its own engine client skips it)."""
    from tau_adapters import plugins
    from tau_adapters.parsers import _factories as parser_factories

    split = plugins.split_spec
    if check_policy:
        _check("policy", split(config.policy)[0], plugins.policy_names(), "--policy")
    _check("user simulator", split(config.user)[0], plugins.user_names(), "--user")
    _check("tool-call parser", split(config.parser)[0], parser_factories(), "--parser")
    shapers = plugins._collect("register_reward_shapers")
    _check("reward shaper", config.reward, shapers, "--reward / TAU_ADAPTERS_REWARD")


def check_user_for_policy(config: EpisodeConfig, *, user_explicit: bool) -> None:
    """The scripted user only makes sense opposite the oracle.

    It replays the task's known conversation and stops after one agent turn with any other
    policy, so a model's score against it means nothing. Refused unless asked for by name.
    """
    from tau_adapters.plugins import split_spec

    if user_explicit or split_spec(config.user)[0] != "scripted":
        return
    if split_spec(config.policy)[0] == "oracle":
        return
    raise ConfigError(
        f"policy {config.policy!r} needs a user simulator: the default scripted user only plays "
        "opposite the oracle (it stops after one agent turn, so scores would mean nothing). "
        "Pass --user litellm:MODEL or --user openai:URL --user-model NAME (or --user scripted "
        "to run it anyway)"
    )
