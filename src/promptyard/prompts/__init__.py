"""The prompt library: prompts, versions, labels, templates and experiments."""
