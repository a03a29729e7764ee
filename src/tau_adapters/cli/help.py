"""`--help` that answers "what happens if I leave this out?" and "what can I put here?".

Run after the parser is built: every option gets its default (the `EpisodeConfig` default where
the CLI leaves the setting to it) and the options that take a registered name list the names
the plugin registries know, so third-party plugins show up too.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tau_adapters import plugins

#: How registered names take an argument (built-ins; plugins are listed by bare name).
SPEC_FORMS = {
    "policy": {"sglang": "sglang:URL", "openai": "openai:URL"},
    "user": {"litellm": "litellm:MODEL", "openai": "openai:URL"},
    "parser": {"sglang": "sglang:<detector>"},
}


def _valid_names(dest: str) -> list[str] | None:
    kinds: dict[str, plugins.Kind] = {
        "policy": "policy",
        "user": "user",
        "parser": "parser",
        "reward": "reward shaper",
    }
    if dest not in kinds:
        return None
    try:
        names = plugins.names(kinds[dest])
    except Exception:  # --help must work even when a plugin is broken
        return None
    forms = SPEC_FORMS.get(dest, {})
    return [forms.get(name, name) for name in names]


def _default_text(action: argparse.Action) -> str:
    from tau_adapters.config import EpisodeConfig

    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if isinstance(action, argparse._StoreFalseAction):
        return "on; this turns it off"
    default: Any = action.default
    if default is None:
        # The CLI leaves the setting to EpisodeConfig (options derived in `cli.options`).
        field = EpisodeConfig.model_fields.get(action.dest)
        if field is not None and action.dest not in ("domain", "split"):
            default = field.get_default(call_default_factory=True)
    if isinstance(default, list):
        default = ",".join(str(v) for v in default)
    if default is None or default == {}:
        return "none"
    if isinstance(default, dict):
        return json.dumps(default)
    return str(default)


class _Formatter(argparse.HelpFormatter):
    """Wraps at spaces only: names such as ``official-no-judge`` are never cut at a hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        text = " ".join(text.split())
        return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def _document(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _Formatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _document(sub)
            continue
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        text = (action.help or "").replace("%", "%%")
        valid = _valid_names(action.dest)
        if valid and "valid:" not in text:
            text = f"{text}; valid: {', '.join(valid)}" if text else f"valid: {', '.join(valid)}"
        if "default" not in text and not action.required:
            extra = f"default: {_default_text(action)}".replace("%", "%%")
            text = f"{text} ({extra})" if text else extra
        action.help = text


def document_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add defaults and valid values to every option's help (in place); returns the parser."""
    _document(parser)
    return parser
