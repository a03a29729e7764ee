"""slime's rollout loop as the partial-rollout contract needs it (see `sglang_rollout`)."""
