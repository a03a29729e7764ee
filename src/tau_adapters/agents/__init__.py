"""Who plays the agent: the oracle, the token policy (any engine), the chat policy, engine clients."""
