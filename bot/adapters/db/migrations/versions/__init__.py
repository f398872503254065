"""Schema versions, oldest first (``0001_initial``…)."""
