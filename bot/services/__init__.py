"""Use cases over the core: explain, and (later) incidents, runner, commands."""
