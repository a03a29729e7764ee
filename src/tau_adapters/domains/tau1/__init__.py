"""tau-bench v1 (module ``tau_bench``): its API surface, data views, the backend."""
