"""The Slack adapter: Block Kit rendering (``blocks``), the outbound thread sender (``sender``), the
translation of Slack failures (``errors``), and the inbound side: the slack-bolt app for ``/incident``
and the card's buttons over HTTP or Socket Mode (``app``), replay protection (``replay``), who clicked
(``directory``) and how answers go back (``replies``)."""
