"""Who plays the customer: the scripted user, the LLM user simulator, tau-bench v1's strategies."""
