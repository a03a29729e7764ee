"""Shared pieces for token-level tests: template styles, engines, a forced-oracle policy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tau_adapters.agents.oracle import OraclePolicy
from tau_adapters.agents.token_policy import TokenPolicy
from tau_adapters.config import EpisodeConfig

ASSETS = Path(
    os.environ.get("TAU_ADAPTERS_TEST_ASSETS")
    or Path(__file__).resolve().parents[2] / "shared" / "assets"
)

#: (id, tokenizer spec, chat template file or None). Built-in styles always run; the real Qwen
#: tokenizers/templates and the real Llama-3.1 template run when the shared assets are present.
LOCAL_STYLES = [
    ("local-chatml", "local:chatml", None),
    ("local-chatml-think", "local:chatml-think", None),
    ("local-headers", "local:headers", None),
]
ASSET_STYLES = [
    ("qwen2.5", str(ASSETS / "qwen2.5-instruct"), None),
    ("qwen3-hybrid", str(ASSETS / "qwen3-hybrid"), None),
    (
        "llama-3.1-template",
        "local:headers",
        str(ASSETS / "templates" / "llama-3.1-8b-instruct.jinja"),
    ),
]


def have_assets() -> bool:
    return (ASSETS / "qwen2.5-instruct" / "vocab.json").exists()


def styles() -> list[Any]:
    """Template styles as pytest params. Styles that need the real assets are always listed and
    show as skipped, with the reason, when the assets are absent (never silently left out)."""
    import pytest

    skip = pytest.mark.skipif(
        not have_assets(),
        reason=f"real tokenizer assets not found at {ASSETS} "
        "(set TAU_ADAPTERS_TEST_ASSETS to the folder holding qwen2.5-instruct/ and templates/)",
    )
    return [pytest.param(style, id=style[0]) for style in LOCAL_STYLES] + [
        pytest.param(style, id=style[0], marks=skip) for style in ASSET_STYLES
    ]


THINK = "<think>\nCheck the policy before acting.\n</think>\n\n"


class RecordingPolicy(TokenPolicy):
    """The real SGLang policy, recording every engine answer (ids and logprobs)."""

    def __init__(self, url: str, config: EpisodeConfig, **kwargs: Any):
        super().__init__(url, config, **kwargs)
        self.generated: list[list[int]] = []
        self.generated_logprobs: list[list[float]] = []
        original = self.client.generate

        async def generate(*args: Any, **kw: Any) -> Any:
            result = await original(*args, **kw)
            self.generated.append(list(result.ids))
            self.generated_logprobs.append(list(result.logprobs))
            return result

        self.client.generate = generate  # type: ignore[method-assign]


class ForcedOracle(RecordingPolicy):
    """The oracle's messages, written in the parser's format and teacher-forced through the
    engine, which returns the tiny model's real logprobs for them."""

    def __init__(self, url: str, config: EpisodeConfig, *, think: bool = False, **kwargs: Any):
        super().__init__(url, config, **kwargs)
        self.think = think
        self.forced: list[int] = []
        self.texts: list[str] = []
        self.override: dict[int, str] = {}

    async def start(self, context: Any) -> None:
        await super().start(context)
        self.oracle = OraclePolicy()
        await self.oracle.start(context)

    async def act(self, observation: list[Any]) -> Any:
        turn = len(self.texts)
        if turn in self.override:
            text = self.override[turn]
        else:
            message = await self.oracle.act(observation)
            text = (THINK if self.think else "") + (message.content or "")
            text += "".join(
                self.parser.render_call(c.name, c.arguments) for c in message.tool_calls or []
            )
        self.texts.append(text)
        self.forced = [*self.template.encode(text), self.template.eot_id]
        return await super().act(observation)

    def request_extras(self) -> dict[str, Any]:
        return {"forced_output_ids": self.forced}
