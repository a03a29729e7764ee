"""Benchmark backends. `get_domain(name)` returns the process-wide backend of a tau2 domain."""

from __future__ import annotations

from tau_adapters.domains.names import DOMAIN_ALIASES, DOMAINS, resolve_domain
from tau_adapters.domains.tau2_backend import Tau2Domain, get_domain

__all__ = ["DOMAINS", "DOMAIN_ALIASES", "Tau2Domain", "get_domain", "resolve_domain"]
