"""tau-adapters."""
