"""Tokens: chat templates, the template probe, the token transcript, tokenizers, chat messages."""
