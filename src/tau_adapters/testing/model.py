"""A tiny randomly initialised causal LM that really samples and returns real logprobs (CPU)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Sampled:
    ids: list[int]
    logprobs: list[float]
    finish: str  # "stop" or "length"
    matched: int | None = None


def position_seed(seed: int, position: int) -> int:
    """A 63-bit generator seed for one (request seed, absolute position) pair (splitmix64)."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(position) + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


class TinyLM:
    """A 2-layer Llama-architecture model with the tokenizer's vocabulary size, seeded."""

    def __init__(self, vocab_size: int, *, seed: int = 0, hidden: int = 32, layers: int = 2):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=131072,
            tie_word_embeddings=True,
        )
        self.torch = torch
        self.model = LlamaForCausalLM(config).eval()
        self.vocab_size = vocab_size
        self.lock = threading.Lock()
        # Prefix cache (like an engine's radix cache): KV states of recent sequences, so that a
        # multi-turn episode only pre-fills each turn's new tokens.
        self._cache: list[tuple[list[int], Any]] = []
        self.cache_entries = 32

    def _prefill(self, input_ids: list[int]) -> tuple[Any, list[int]]:
        import copy

        torch = self.torch
        best: tuple[list[int], Any] | None = None
        for ids, cache in self._cache:
            longer = best is None or len(ids) > len(best[0])
            if len(ids) < len(input_ids) and longer and input_ids[: len(ids)] == ids:
                best = (ids, cache)
        if best is not None:
            fed, cache = list(best[0]), copy.deepcopy(best[1])
            out = self.model(
                torch.tensor([input_ids[len(fed) :]]),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        else:
            # Only the last position's logits: a 151k-token vocabulary over a long prompt would
            # otherwise allocate gigabytes.
            out = self.model(torch.tensor([input_ids]), use_cache=True, logits_to_keep=1)
        return out, list(input_ids)

    def _remember(self, fed: list[int], cache: Any) -> None:
        import copy

        self._cache.append((list(fed), copy.deepcopy(cache)))
        del self._cache[: -self.cache_entries]

    def _log_softmax(self, logits: Any, temperature: float) -> Any:
        scale = temperature if temperature > 0 else 1.0
        return self.torch.log_softmax(logits.float() / scale, dim=-1)

    def sample(
        self,
        input_ids: Sequence[int],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        stop_ids: Sequence[int] = (),
        seed: int | None = None,
        forced: Sequence[int] | None = None,
        banned: Sequence[int] = (),
        end_after: int | None = None,
        end_token: int | None = None,
    ) -> Sampled:
        """Sample (or, with `forced`, teacher-force) up to `max_new_tokens` tokens.

        Logprobs are log-softmax of the logits divided by the temperature, of the token emitted.
        `banned` tokens are never picked (a chat reply of special tokens decodes to nothing);
        `end_after` tokens in, `end_token` is emitted (with its logprob under the model), as a
        trained model ends its turn: a random model almost never samples it by itself.
        """
        torch = self.torch
        stops = set(stop_ids)
        ids: list[int] = []
        logprobs: list[float] = []
        if forced is not None:
            return self._teacher_force(
                list(input_ids), list(forced)[:max_new_tokens], stops, temperature, max_new_tokens
            )
        with self.lock, torch.no_grad():
            out, fed = self._prefill(list(input_ids))
            for step in range(max_new_tokens):
                # One generator per absolute position, keyed by (seed, position) as SGLang's
                # seeded sampler is: a request continued after an abort (the prompt now holds
                # the tokens emitted before it) draws what the uninterrupted request would have.
                generator = (
                    torch.Generator().manual_seed(position_seed(seed, len(input_ids) + step))
                    if seed is not None
                    else None
                )
                logp = self._log_softmax(out.logits[0, -1], temperature)
                if forced is not None:
                    if step >= len(forced):
                        break
                    token = int(forced[step])
                elif end_token is not None and end_after is not None and step >= end_after:
                    token = int(end_token)
                else:
                    pick_from = logp
                    if banned:
                        pick_from = logp.clone()
                        pick_from[list(banned)] = float("-inf")
                    token = self._pick(pick_from, temperature, top_p, top_k, generator)
                ids.append(token)
                logprobs.append(float(logp[token]))
                if token in stops:
                    break
                out = self.model(
                    torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True
                )
                fed.append(token)
            self._remember(fed, out.past_key_values)
        if ids and ids[-1] in stops:
            return Sampled(ids, logprobs, "stop", ids[-1])
        if forced is not None and len(ids) >= len(forced):
            return Sampled(ids, logprobs, "stop", None)
        return Sampled(ids, logprobs, "length", None)

    def _teacher_force(
        self,
        input_ids: list[int],
        forced: list[int],
        stops: set[int],
        temperature: float,
        max_new_tokens: int,
    ) -> Sampled:
        """Emit `forced` (up to the first stop token) in one forward pass, with real logprobs."""
        torch = self.torch
        for index, token in enumerate(forced):
            if token in stops:
                forced = forced[: index + 1]
                break
        with self.lock, torch.no_grad():
            out, fed = self._prefill(input_ids)
            logps = [self._log_softmax(out.logits[0, -1], temperature)]
            if len(forced) > 1:
                more = self.model(
                    torch.tensor([forced[:-1]]), past_key_values=out.past_key_values, use_cache=True
                )
                logps.extend(self._log_softmax(more.logits[0], temperature))
                out = more
            logprobs = [float(logp[token]) for logp, token in zip(logps, forced, strict=True)]
            fed.extend(forced[:-1])
            self._remember(fed, out.past_key_values)
        if forced and forced[-1] in stops:
            return Sampled(forced, logprobs, "stop", forced[-1])
        finish = "length" if len(forced) >= max_new_tokens else "stop"
        return Sampled(forced, logprobs, finish, None)

    def _pick(self, logp: Any, temperature: float, top_p: float, top_k: int, gen: Any) -> int:
        torch = self.torch
        if temperature <= 0:
            return int(torch.argmax(logp))
        probs = torch.exp(logp)
        if top_k and top_k > 0:
            kth = torch.topk(probs, min(top_k, probs.numel())).values[-1]
            probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
        if top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, 0) - sorted_probs < top_p
            mask = torch.zeros_like(probs, dtype=torch.bool)
            mask[order[keep]] = True
            probs = torch.where(mask, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=gen))

    def teacher_forced_logprobs(
        self, ids: Sequence[int], positions: Sequence[int], temperature: float = 1.0
    ) -> list[float]:
        """Logprob of ``ids[p]`` given ``ids[:p]`` for each position, from one forward pass."""
        torch = self.torch
        with self.lock, torch.no_grad():
            hidden = self.model.model(torch.tensor([list(ids)])).last_hidden_state[0]
            # Project only the positions asked for (a full vocabulary x sequence matrix is huge).
            rows = torch.tensor([p - 1 for p in positions], dtype=torch.long)
            logp = self._log_softmax(self.model.lm_head(hidden[rows]), temperature)
        return [float(logp[i, ids[p]]) for i, p in enumerate(positions)]
