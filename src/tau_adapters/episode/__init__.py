"""One episode: the session state machine, the rollout driver, task references, the text episode."""
