"""tau2-bench (module ``tau2``): its API surface, the backend, the agent prompt."""
