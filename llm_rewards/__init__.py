"""LLM-derived rewards: clients, cache, annotator, sandbox and methods (later issues)."""
