"""Tool-call parsers: model text to tool calls or a reply, one table of formats by name."""
