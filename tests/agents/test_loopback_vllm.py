"""The loopback engine's vLLM routes, as SkyRL's RemoteInferenceClient calls them."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

pytest.importorskip("uvicorn", reason="the loopback engine needs the [testing] extra")


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_vllm_generate_detokenize_and_finish_session() -> None:
    from tau_adapters.testing import LoopbackEngine

    with LoopbackEngine(canned=lambda ids, body: [5, 6, 7]) as engine:
        eos = engine.tokenizer.eos_token_id
        url = engine.url
        body = {"token_ids": [1, 2, 3], "sampling_params": {"max_tokens": 2}, "model": "m"}
        answer = _post(f"{url}/inference/v1/generate", body)
        choice = answer["choices"][0]
        assert choice["token_ids"] == [5, 6] and choice["finish_reason"] == "length"
        assert choice["logprobs"] is None
        body["sampling_params"] = {"max_tokens": 8, "logprobs": 0}
        engine.canned = lambda ids, body: [5, eos]
        choice = _post(f"{url}/inference/v1/generate", body)["choices"][0]
        assert choice["token_ids"] == [5, eos] and choice["finish_reason"] == "stop"
        assert [c["logprob"] for c in choice["logprobs"]["content"]] == [0.0, 0.0]
        text = _post(f"{url}/detokenize", {"tokens": [5, 6], "model": "m"})["prompt"]
        assert text == engine.tokenizer.decode([5, 6])
        assert _post(f"{url}/finish_session?session_id=a", {}) == {}
        assert engine.requests["vllm_generate"] == 2 and engine.requests["finish_session"] == 1
