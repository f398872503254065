"""Access logs (nginx, Apache): how many requests of the incident window were answered 5xx, and which.

Why: the error log says why a request failed; the access log says how many did, since when, with which
upstream status (``upstream_status=-`` means the proxy answered by itself: a limit or a maintenance page).
What it runs: the same fixed tail pipeline as ``proxy_log`` (paths as positional arguments)::

    sh -c '<TAIL_SCRIPT>' sh LINES PATH...
    sudo -n tail -v -n LINES -- PATH...         # only the unreadable ones

Files: facts ``nginx_access_log`` and ``apache_access_log`` (comma-separated lists accepted) plus
``Params.paths``, else the distribution defaults that exist. Lines outside ``since_minutes`` are dropped
by their ``[dd/Mon/yyyy:HH:MM:SS +zone]`` stamp; unreadable logs are retried with ``sudo -n``.
Reader: ``http.access`` (5xx count and rate, by status and upstream status).
"""

from __future__ import annotations

from bot.evidence.readers.nginx_access import HttpAccessLog
from bot.runbook.api import Runbook, Steps
from runbooks.proxy_log import TAIL_SHAPES, LogParams, tail_steps


class AccessLog(Runbook):
    """5xx rate of the access logs over the last ``since_minutes`` minutes."""

    name = "access_log"
    title = "Access log 5xx rate (nginx, Apache) over the incident window"
    roles = frozenset({"proxy"})
    Params = LogParams
    readers = (HttpAccessLog,)
    shapes = TAIL_SHAPES
    DEFAULTS = ("/var/log/nginx/access.log", "/var/log/apache2/access.log", "/var/log/httpd/access_log")

    def steps(self) -> Steps:
        assert isinstance(self.params, LogParams)
        return (yield from tail_steps(self, self.params, ("nginx_access_log", "apache_access_log"), self.DEFAULTS))
