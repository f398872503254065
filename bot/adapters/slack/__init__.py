"""The Slack adapter: Block Kit rendering (``blocks``), the outbound thread sender (``sender``) and the
translation of Slack failures (``errors``)."""
