"""The cause catalog, the rules over findings, and the engine that ranks causes."""
