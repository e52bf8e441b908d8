"""API keys, plans, stream tokens and private channels (issue: auth and plans)."""
