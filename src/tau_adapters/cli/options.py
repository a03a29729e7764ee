"""Command-line options derived from `EpisodeConfig`'s fields: one place for names, help, choices
and checks.

Each field becomes ``--<field-with-dashes>`` (a ``_s`` suffix, seconds, is dropped:
``request_timeout_s`` is ``--request-timeout``); its help is the field's description; a
``Literal`` field gets its values as choices; a boolean that defaults to on becomes ``--no-<name>``;
a dict field takes a JSON object. Values are checked when parsed against the field's own type and
bounds (``--max-steps 0`` is refused by argparse with the field's rule), and the defaults the help
shows are the field defaults (`tau_adapters.cli.help`). A field added to `EpisodeConfig` shows up
here, in ``--help`` and in the run's recorded configuration without touching the CLI.

Options are grouped by the field's prefix: ``user_*`` (the user simulator), ``reward*`` and
``curriculum_*`` (reward shaping), the rest (the episode and the policy).
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from tau_adapters.config import EpisodeConfig

#: Fields the eval command takes in its own form (a comma list of domains, a split per domain).
EVAL_OWN = ("domain", "split")

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("judge of natural-language assertions", ("judge_",)),
    ("user simulator (--user litellm:MODEL | openai:URL)", ("user_",)),
    ("reward shaping (the official reward is always kept next to the shaped one)",
     ("reward", "curriculum_")),
    ("episode and policy (served policies: --policy sglang:URL | openai:URL)", ("",)),
)  # fmt: skip


def option_name(field: str) -> str:
    """``request_timeout_s`` -> ``--request-timeout``; a default-on boolean gets ``--no-``.

    A field may name its option itself: ``json_schema_extra={"cli": "--solo"}``.
    """
    info = EpisodeConfig.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    name = str(extra.get("cli") or "--" + field.removesuffix("_s").replace("_", "-"))
    if _base_type(info) is bool and info.default is True:
        return "--no-" + name[2:]
    return name


def _base_type(info: FieldInfo) -> Any:
    """The annotation without ``None`` (``int | None`` -> ``int``)."""
    annotation = info.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _converter(field: str, info: FieldInfo) -> Any:
    """Parse and check one option's text with the field's own type and bounds."""
    base = _base_type(info)
    annotated = Annotated.__class_getitem__((base, *info.metadata)) if info.metadata else base  # type: ignore[attr-defined]
    adapter: TypeAdapter[Any] = TypeAdapter(annotated)
    is_dict = typing.get_origin(base) is dict or base is dict

    def convert(text: str) -> Any:
        value: Any = text
        if is_dict:
            try:
                value = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as exc:
                raise argparse.ArgumentTypeError(
                    f"expected a JSON object ({exc.msg}), got {text!r}"
                ) from None
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            raise argparse.ArgumentTypeError(f"{message} (got {text!r})") from None

    convert.__name__ = field  # argparse names the type in some messages
    return convert


def _metavar(field: str, base: Any) -> str:
    if typing.get_origin(base) is dict or base is dict:
        return "JSON"
    if field.endswith("_s"):
        return "SECONDS"
    return {int: "N", float: "X"}.get(base, "TEXT")


def _group_of(field: str) -> str:
    for title, prefixes in GROUPS:
        if any(field.startswith(prefix) for prefix in prefixes):
            return title
    return GROUPS[-1][0]


def add_config_options(
    parser: argparse.ArgumentParser,
    *,
    skip: tuple[str, ...] = EVAL_OWN,
    only: tuple[str, ...] | None = None,
) -> list[str]:
    """Add an option per `EpisodeConfig` field (but `skip`; or just `only`); returns the fields.

    Every option defaults to None, so that an unset option leaves the setting to the
    environment (``TAU_ADAPTERS_*``, ``TAU2_*``) and then to the field default.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    added = []
    for field, info in EpisodeConfig.model_fields.items():
        if field in skip or (only is not None and field not in only):
            continue
        title = _group_of(field)
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        group = groups[title]
        help_text = (info.description or "").rstrip(".")
        if field.endswith("_s") and "second" not in help_text.lower():
            help_text = f"{help_text} (seconds)" if help_text else "seconds"
        base = _base_type(info)
        if base is bool:
            group.add_argument(
                option_name(field),
                dest=field,
                action="store_false" if info.default is True else "store_true",
                default=None,
                help=help_text,
            )
        elif typing.get_origin(base) is Literal:
            group.add_argument(
                option_name(field),
                dest=field,
                choices=list(typing.get_args(base)),
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                option_name(field),
                dest=field,
                type=_converter(field, info),
                default=None,
                metavar=_metavar(field, base),
                help=help_text,
            )
        added.append(field)
    return added


def config_overrides(args: argparse.Namespace, fields: list[str]) -> dict[str, Any]:
    """The settings given on the command line (unset options are left out)."""
    return {field: getattr(args, field) for field in fields if getattr(args, field) is not None}
