"""Rewards: the official reward and the opt-in shapers (partial credit, curriculum)."""
