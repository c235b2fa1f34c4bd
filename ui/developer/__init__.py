"""The Developer screen: API keys with scopes and limits, and usage plots."""
