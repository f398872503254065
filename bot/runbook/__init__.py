"""The runbook plugin contract: runbooks import only ``bot.runbook.api``."""
