"""The ``tau-adapters`` command line."""
