"""tau-bench v1 (module ``tau_bench``) in the benchmark registry (`domains.names.BENCHMARKS`)."""

from __future__ import annotations

from typing import Any

#: Our domain names -> v1's: the names are ours (v1 and tau2 share ``airline``/``retail``).
TAU1_DOMAINS: dict[str, str] = {"tau1-airline": "airline", "tau1-retail": "retail"}


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
        from tau_adapters.domains.tau1.api import TAU1_COMMIT, api1

        return f"tau-bench {api1().version} ({TAU1_COMMIT[:12]})"


BENCHMARK = Tau1Benchmark()
