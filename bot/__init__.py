"""incident-bot: a chat-ops incident bot that reads HTTP 5xx outages at the protocol level."""

__version__ = "0.1.0"
