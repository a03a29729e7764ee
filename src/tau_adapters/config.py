"""One pydantic model for an episode. Every host passes the same names in its own idiom."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tau_adapters.domains.names import resolve_domain_name
from tau_adapters.errors import ConfigError, UnknownNameError, close_matches

# tau2's defaults (tau2.config.DEFAULT_MAX_STEPS / DEFAULT_MAX_ERRORS / DEFAULT_SEED), kept here so
# that building a config does not import tau2; a test checks they still agree.
TAU2_DEFAULT_MAX_STEPS = 200
TAU2_DEFAULT_MAX_ERRORS = 10
TAU2_DEFAULT_SEED = 300
#: tau-bench v1's ``ToolCallingAgent.solve(max_num_steps=30)``: its runner never passes another.
TAU1_DEFAULT_MAX_NUM_STEPS = 30

#: Environment variables of existing tau2 recipes, and the setting each one fills.
ENV_ALIASES: dict[str, str] = {
    "TAU2_DOMAIN": "domain",
    "TAU2_SPLIT": "split",
    "TAU2_MAX_STEPS": "max_steps",
    "TAU2_MAX_ERRORS": "max_errors",
    "TAU2_SEED": "seed",
    "TAU2_USER": "user",
    "TAU2_POLICY": "policy",
    "TAU2_JUDGE_MODEL": "judge_model",
    "TAU2_RETRIEVAL_VARIANT": "retrieval_variant",
    "TAU2_USER_MODEL": "user_model",
    "TAU2_USER_API_BASE": "user_api_base",
    "TAU2_USER_TEMPERATURE": "user_temperature",
    "TAU2_USER_MAX_TOKENS": "user_max_tokens",
    "TAU2_REWARD_ALPHA": "reward_alpha",
    "TAU2_PARTIAL_ACTION_WEIGHT": "reward_action_weight",
    "TAU2_PARTIAL_COMMUNICATE_WEIGHT": "reward_communicate_weight",
    "TAU2_PARTIAL_ENV_ASSERTION_WEIGHT": "reward_env_assertion_weight",
    "TAU2_PARTIAL_DB_WEIGHT": "reward_db_weight",
    "TAU2_SOLO_MODE": "solo_mode",
    "TAU2_THINKING_TOOL": "add_thinking_tool",
}
ENV_PREFIX = "TAU_ADAPTERS_"

#: The grading (and reward shorthand) that leaves natural-language assertions out: for training
#: without a judge. Its numbers are not the benchmark's official score and are labelled so.
NO_JUDGE = "official-no-judge"


class EpisodeConfig(BaseModel):
    """What one episode is: which task set, which limits, who plays the user and the agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: str = Field(
        "airline",
        description="Domain: tau2's registry (airline, retail, telecom, "
        "telecom-workflow, mock, banking_knowledge on v1) or tau1-airline/tau1-retail.",
    )
    split: str | None = Field(
        None,
        description="Task split: train, test, base (airline, retail, telecom; telecom also small, "
        "full; mock only base), or all for every task; unset means the domain's default "
        "(`tau-adapters tasks list` shows them).",
    )
    max_steps: int = Field(
        TAU2_DEFAULT_MAX_STEPS, ge=1, description="tau2's max_steps: messages passed, all roles."
    )
    max_errors: int = Field(
        TAU2_DEFAULT_MAX_ERRORS, ge=1, description="tau2's max_errors: failed tool calls."
    )
    tau1_max_num_steps: int = Field(
        TAU1_DEFAULT_MAX_NUM_STEPS,
        ge=1,
        description="tau-bench v1 domains: v1's max_num_steps, agent actions per episode (its "
        "runner's 30); v1 has no max_steps over messages and no max_errors.",
    )
    seed: int = Field(TAU2_DEFAULT_SEED, description="Base seed; trial k uses seed + k.")
    user: str = Field("scripted", description="User simulator spec, e.g. 'scripted'.")
    policy: str = Field("oracle", description="Policy spec, e.g. 'oracle'.")
    judge_model: str | None = Field(
        None,
        description="LLM judge of natural-language assertions: openai:URL (with judge_model_name), "
        "litellm:MODEL, or a bare litellm model name. None: no judge.",
    )
    judge_model_name: str | None = Field(
        None, description="Model name sent to an openai:URL judge endpoint."
    )
    judge_api_base: str | None = Field(None, description="Endpoint base URL for a litellm judge.")
    judge_timeout_s: float = Field(120.0, gt=0, description="Seconds per judge request.")
    judge_attempts: int = Field(4, ge=1, description="Attempts per judge request (retries+1).")
    judge_concurrency: int = Field(16, ge=1, description="Judge calls in flight per endpoint.")
    grading: Literal["official", "official-no-judge"] = Field(
        "official",
        description="official: the benchmark's rule (NL assertions need a judge); "
        "official-no-judge: every component but the NL assertions (not the official score).",
    )
    retrieval_variant: str | None = Field(
        None,
        description="Knowledge domains (tau2 v1 banking_knowledge): tau2's retrieval variant; "
        "None means 'bm25' (offline). Other domains ignore it.",
    )
    solo_mode: bool = Field(
        False,
        json_schema_extra={"cli": "--solo"},
        description="tau2's solo protocol: no user; the ticket in the system prompt; the agent "
        "holds the user's tools and ends with `done` (telecom, mock).",
    )
    solo_ticket_as_user: bool = Field(
        False,
        description="solo_mode: also send the ticket as a first user turn (a deviation from "
        "tau2, for chat templates that cannot render a prompt without a user message).",
    )
    add_thinking_tool: bool = Field(
        False,
        json_schema_extra={"cli": "--thinking-tool"},
        description="Offer a think(thoughts) tool (AReaL's): answered locally, no environment "
        "step, left out of what tau2 scores.",
    )

    # -- the user simulator --------------------------------------------------------------------
    user_model: str | None = Field(
        None, description="User-simulator model (litellm name, or the served model's name)."
    )
    user_api_base: str | None = Field(None, description="User-simulator endpoint base URL.")
    user_temperature: float = Field(
        0.0, ge=0.0, description="User-simulator sampling temperature (tau2 uses 0)."
    )
    user_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per user-simulator reply (none: the endpoint's)."
    )
    user_extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra request fields, e.g. chat_template_kwargs."
    )
    user_concurrency: int = Field(64, ge=1, description="Calls in flight per user endpoint.")
    user_timeout_s: float = Field(120.0, gt=0, description="Seconds per user-simulator request.")
    user_attempts: int = Field(4, ge=1, description="Attempts per user-simulator request.")
    user_empty_retries: int = Field(
        3, ge=0, description="Re-asks after an empty user reply (tau2: 3), then user_error."
    )
    user_cache: str | None = Field(
        None,
        description="Folder of an on-disk cache of user-simulator replies (SQLite, shared by "
        "processes): a re-run replays the user instead of calling the model.",
    )
    user_strategy: Literal["llm", "react", "verify", "reflection"] = Field(
        "llm",
        description="tau-bench v1 domains: v1's user strategy (llm, react, verify, reflection).",
    )

    # -- reward shaping (the official reward is always kept) ------------------------------------
    reward: str = Field(
        "binary",
        description="Reward shaper: binary (= official), partial, curriculum; official-no-judge: "
        "binary over grading official-no-judge (no judge, not the official score).",
    )
    reward_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings for a shaper that declares a settings model (JSON object).",
    )
    reward_alpha: float = Field(0.25, ge=0.0, description="partial: weight of the partial score.")
    reward_domain_alpha_scale: dict[str, float] = Field(
        default_factory=lambda: {"airline": 1.0, "retail": 0.8, "telecom": 1.6},
        description="partial: per-domain multiplier of reward_alpha ({} for none).",
    )
    reward_action_weight: float = Field(
        0.5, ge=0.0, description="partial: weight of the gold actions taken."
    )
    reward_communicate_weight: float = Field(
        0.15, ge=0.0, description="partial: weight of the information communicated."
    )
    reward_env_assertion_weight: float = Field(
        0.35, ge=0.0, description="partial: weight of the environment assertions met."
    )
    reward_db_weight: float = Field(
        0.0, ge=0.0, description="partial: weight of the final database matching."
    )
    curriculum_window: int = Field(16, ge=1, description="curriculum: trials remembered per task.")
    curriculum_min_attempts: int = Field(
        4, ge=1, description="curriculum: trials of a task before it can count as solved or hard."
    )
    curriculum_solved_threshold: float = Field(
        0.75, ge=0.0, le=1.0, description="curriculum: success rate above which a task is solved."
    )
    curriculum_hard_threshold: float = Field(
        0.25, ge=0.0, le=1.0, description="curriculum: success rate below which a task is hard."
    )
    curriculum_solved_weight: float = Field(
        0.5, ge=0.0, description="curriculum: sample weight of a solved task."
    )
    curriculum_hard_weight: float = Field(
        0.5, ge=0.0, description="curriculum: sample weight of a hard task."
    )

    # -- the model side (token-level and text-level policies) ----------------------------------
    parser: str = Field("hermes", description="Tool-call parser: hermes, json, sglang:<name>.")
    on_malformed: Literal["observe", "end", "remove"] = Field(
        "observe",
        description="Unparseable tool call: send an error back (observe), end the episode (end), "
        "or end it and mark the sample for removal (remove).",
    )
    tokenizer: str | None = Field(
        None, description="Local Hugging Face tokenizer folder (token-level policies)."
    )
    chat_template: str | None = Field(
        None, description="A Jinja chat-template file that replaces the tokenizer's own."
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra chat-template arguments (e.g. enable_thinking)."
    )
    model: str | None = Field(None, description="Model name for OpenAI-compatible endpoints.")
    temperature: float = Field(1.0, ge=0.0, description="Policy sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Policy nucleus-sampling top_p.")
    max_new_tokens: int = Field(1024, ge=1, description="Tokens per model turn.")
    max_response_tokens: int | None = Field(
        None, ge=1, description="Response-token budget of the whole episode (prompt excluded)."
    )
    max_context_tokens: int | None = Field(
        None, ge=1, description="Context-length limit (prompt + response)."
    )
    check_tokens: bool = Field(
        False, description="Compare kept ids with a fresh full render at the end of each episode."
    )
    session_routing: bool = Field(
        True, description="Send X-SMG-Routing-Key per episode (sticky routing)."
    )
    thunderagent: bool = Field(
        False,
        description="ThunderAgent program_id per episode, released when it ends (sglang: needs "
        "ThunderAgent tool_improve with --enable-slime-adapter; openai: works with main).",
    )
    request_timeout_s: float = Field(600.0, gt=0, description="Seconds per engine request.")
    request_attempts: int = Field(4, ge=1, description="Attempts per engine request (retries+1).")

    @field_validator(
        "chat_template_kwargs",
        "user_extra_body",
        "reward_domain_alpha_scale",
        "reward_options",
        mode="before",
    )
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"expected a JSON object ({exc.msg})") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_judge_shorthand(cls, values: Any) -> Any:
        """``reward=official-no-judge`` means the binary reward over the no-judge grading."""
        if isinstance(values, dict) and values.get("reward") == NO_JUDGE:
            if values.get("grading", NO_JUDGE) != NO_JUDGE:
                raise ValueError(
                    f"reward {NO_JUDGE!r} grades without a judge, but grading is "
                    f"{values['grading']!r}: drop one of the two"
                )
            values = {**values, "grading": NO_JUDGE}
        return values

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: str) -> str:
        return resolve_domain_name(value)

    @field_validator("policy", "user")
    @classmethod
    def _served_url(cls, value: str) -> str:
        """``sglang:HOST:PORT`` and ``openai:HOST:PORT`` lack the scheme their clients need."""
        name, _, arg = value.partition(":")
        if name in ("sglang", "openai") and re.fullmatch(r"[\w.\-\[\]]+:\d+(/.*)?", arg):
            raise ValueError(
                f"{name}:URL needs a full URL with its scheme: {name}:http://{arg}"
                + ("/v1" if name == "openai" and not arg.rstrip("/").endswith("/v1") else "")
            )
        return value

    @classmethod
    def build(cls, **values: Any) -> EpisodeConfig:
        """Validate settings; a bad one raises `ConfigError` naming the setting and the fix.

        Beyond the types and ranges: the policy, user simulator, parser and reward shaper names
        must be registered, and the split must be one of the domain's, so that a typo fails here
        rather than in every episode.
        """
        try:
            config = cls(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None
        config.check(check_policy=True)
        return config

    def check(self, *, check_policy: bool = True) -> None:
        """The checks `build` adds to the field validators (names registered, split known).

        `check_policy` is off where the policy is the host's own engine client, not a name.
        """
        from tau_adapters.plugins import check_names

        check_names(self, check_policy=check_policy)
        if self.split is not None:
            _check_split(self.domain, self.split)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EpisodeConfig:
        """Settings from ``TAU_ADAPTERS_<NAME>`` and the ``TAU2_*`` names recipes already use.

        Explicit keyword arguments win over the environment.
        """
        environ = os.environ if environ is None else environ
        check_environment(environ)  # a misspelt TAU_ADAPTERS_* name fails instead of being ignored
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for var, field in ENV_ALIASES.items():
            if var in environ:
                values[field] = environ[var]
                sources[field] = var
        for field in cls.model_fields:
            var = ENV_PREFIX + field.upper()
            if var in environ:
                values[field] = environ[var]
                sources[field] = var
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            config = cls(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, sources)) from None
        if config.split is not None:
            _check_split(config.domain, config.split)
        return config


def _check_split(domain: str, split: str) -> None:
    """`split` is one of `domain`'s (loads the domain's task index, not the tau2 environment)."""
    from tau_adapters.domains import get_domain
    from tau_adapters.domains.names import resolve_domain

    name, fixed = resolve_domain(domain, split)
    try:
        backend = get_domain(name)
        valid = backend.splits()
    except ImportError:  # the benchmark is not installed: the episode says so when it starts
        return
    if (fixed or split) not in valid:
        raise UnknownNameError(f"split of domain {name!r}", split, valid)


def _explain(exc: ValidationError, sources: Mapping[str, str] | None = None) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "config"
        where = f" (from ${sources[field]})" if sources and field in sources else ""
        if err["type"] == "extra_forbidden":
            valid = ", ".join(EpisodeConfig.model_fields)
            lines.append(f"unknown setting {field!r}{where}; valid settings: {valid}")
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"setting {field!r}{where}: {message} (got {err.get('input')!r})")
    return "invalid episode configuration:\n  " + "\n  ".join(lines)


#: ``TAU_ADAPTERS_*`` variables a user sets that are not `EpisodeConfig` fields.
USER_ENV_VARS: dict[str, str] = {
    "TAU_ADAPTERS_CPU_THREADS": "threads for per-turn CPU work (positive integer, default 4)",
}
#: Variables of the test suite and CI: accepted, but not offered to users in error messages.
INTERNAL_ENV_VARS: dict[str, str] = {
    "TAU_ADAPTERS_TEST_ASSETS": "tests: folder of real tokenizer/template assets",
    "TAU_ADAPTERS_SHARED": "CI: folder of shared wheels and assets",
    "TAU_ADAPTERS_TAU1_PARITY": "tests: 'full' checks v1 scoring parity on every task",
    "TAU_ADAPTERS_THUNDERAGENT_MAIN_PYTHON": "tests: a Python with ThunderAgent main installed",
    "TAU_ADAPTERS_THUNDERAGENT_TOOL_IMPROVE_PYTHON": (
        "tests: a Python with ThunderAgent tool_improve installed"
    ),
    "TAU_ADAPTERS_REQUIRE_THUNDERAGENT": "CI: router builds whose tests must run, not skip",
}
#: Every ``TAU_ADAPTERS_*`` variable read somewhere that is not an `EpisodeConfig` field.
OTHER_ENV_VARS: dict[str, str] = {**USER_ENV_VARS, **INTERNAL_ENV_VARS}


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Unknown ``TAU_ADAPTERS_*`` variables and a bad ``TAU_ADAPTERS_CPU_THREADS`` fail here.

    A misspelt variable would otherwise be ignored silently and the run would use the default.
    """
    environ = os.environ if environ is None else environ
    offered = {ENV_PREFIX + field.upper() for field in EpisodeConfig.model_fields} | set(
        USER_ENV_VARS
    )
    known = offered | set(INTERNAL_ENV_VARS)
    problems = []
    for var in sorted(v for v in environ if v.startswith(ENV_PREFIX)):
        if var in known:
            continue
        near = close_matches(var, offered)
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
        valid = ", ".join(sorted(offered))
        raise ConfigError(
            "bad environment:\n  "
            + "\n  ".join(problems)
            + f"\nvalid TAU_ADAPTERS_* names: {valid}"
        )
