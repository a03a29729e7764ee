"""Host configuration and dataset fields arrive as dicts, JSON text, dataclasses (AReaL) or
OmegaConf nodes (SkyRL, AReaL's yaml): one conversion to a plain dict for every adapter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any


def as_mapping(value: Any) -> dict[str, Any] | None:
    """A plain ``dict`` from a mapping, a JSON object text, a dataclass instance or an OmegaConf
    node (resolved); ``{}`` for None; None when `value` is none of those."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return None
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    try:  # OmegaConf is a dependency of the hosts that hand it to us, never of ours
        from omegaconf import DictConfig, OmegaConf
    except ImportError:
        pass
    else:
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return None
