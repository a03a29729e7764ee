"""tau-bench v1 (module ``tau_bench``) in the benchmark registry (`domains.names.BENCHMARKS`)."""

from __future__ import annotations

from typing import Any

from tau_adapters.domains.tau1.api import TAU1_DOMAINS, tau1_version_label

__all__ = ["BENCHMARK", "TAU1_DOMAINS"]


class Tau1Benchmark:
    name = "tau1"
    skyrl_env_class = "tau_bench"
    #: v1 plays its own user strategies (llm, react, verify, reflection).
    user_factory: str | None = "tau_adapters.users.tau1:Tau1User"

    def owns(self, name: str) -> bool:
        return name in TAU1_DOMAINS

    def domain_names(self) -> list[str]:
        return list(TAU1_DOMAINS)

    def resolve(self, name: str, split: str | None) -> tuple[str, str | None]:
        return name, split

    def get_domain(self, name: str, **options: Any) -> Any:
        from tau_adapters.domains.tau1.backend import get_tau1_domain

        return get_tau1_domain(name)

    def version(self) -> str:
        return tau1_version_label()


BENCHMARK = Tau1Benchmark()
