"""Benchmark backends. `get_domain(name)` returns the process-wide backend of a domain: tau2's
(``airline``, ``retail``, ``telecom``, ``mock``) or tau-bench v1's (``tau1-airline``,
``tau1-retail``)."""

from __future__ import annotations

from typing import Any

from tau_adapters.domains.base import Domain
from tau_adapters.domains.names import (
    DOMAIN_ALIASES,
    DOMAINS,
    TAU1_DOMAINS,
    benchmark_of,
    resolve_domain,
)
from tau_adapters.domains.tau2.backend import Tau2Domain
from tau_adapters.domains.tau2.backend import get_domain as get_tau2_domain


def get_domain(name: str) -> Any:
    """The process-wide backend of a domain or task-set name (tau2 or tau-bench v1)."""
    if name in TAU1_DOMAINS:
        from tau_adapters.domains.tau1.backend import get_tau1_domain

        return get_tau1_domain(name)
    return get_tau2_domain(name)


__all__ = [
    "DOMAINS",
    "DOMAIN_ALIASES",
    "TAU1_DOMAINS",
    "Domain",
    "Tau2Domain",
    "benchmark_of",
    "get_domain",
    "resolve_domain",
]
