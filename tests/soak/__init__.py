"""On-demand soak scripts (issue #9 items 9 and 10); not collected by pytest (their names are ``soak_*.py``)."""
