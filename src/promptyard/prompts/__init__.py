"""The versioned prompt library: templates, prompts, versions, labels, import/export, starter set."""
