"""Benchmark backends. `get_domain(name)` returns the process-wide backend of a domain, from the
benchmark that owns the name (`names.BENCHMARKS`: tau2's registry domains, tau-bench v1's
``tau1-airline``/``tau1-retail``)."""

from __future__ import annotations

from typing import Any

from tau_adapters.domains.base import Domain
from tau_adapters.domains.names import (
    BENCHMARKS,
    Benchmark,
    benchmark_for,
    benchmark_of,
    domain_names,
    get_benchmark,
    resolve_domain,
)
from tau_adapters.domains.tau1.benchmark import TAU1_DOMAINS
from tau_adapters.domains.tau2.backend import Tau2Domain
from tau_adapters.domains.tau2.benchmark import DOMAIN_ALIASES


def get_domain(name: str, **options: Any) -> Any:
    """The process-wide backend of a domain or task-set name. `options`: benchmark settings such
    as ``retrieval_variant`` (tau2 knowledge domains); a benchmark ignores those it lacks."""
    return benchmark_for(name).get_domain(name, **options)


__all__ = [
    "BENCHMARKS",
    "DOMAIN_ALIASES",
    "TAU1_DOMAINS",
    "Benchmark",
    "Domain",
    "Tau2Domain",
    "benchmark_for",
    "benchmark_of",
    "domain_names",
    "get_benchmark",
    "get_domain",
    "resolve_domain",
]
