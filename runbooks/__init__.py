"""Built-in runbooks: one module per runbook (see DESIGN §6)."""
