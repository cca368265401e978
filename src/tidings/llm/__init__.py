"""The LLM layer: providers and the one gateway (``gateway``: cache, retries, budget,
accounting), and the summarize/classify tasks with their prompts and validation (``tasks``)."""
