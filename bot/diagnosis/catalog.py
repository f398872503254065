"""The cause catalog of DESIGN §5: stable ids, what each means, the statuses it produces, next steps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    title: str
    meaning: str
    statuses: tuple[int, ...]
    next_steps: tuple[str, ...]
    #: Causes this one usually explains when both are seen (the root cause outranks its symptoms).
    explains: tuple[str, ...] = ()


_ENTRIES = (
    CatalogEntry(
        "upstream_down",
        "Upstream is not running",
        "Nothing listens where the proxy forwards: the app server is stopped, crashed for good, or the "
        "proxy points at the wrong address or socket.",
        (502, 503),
        (
            "Check the app server: `systemctl status <unit>` and `journalctl -u <unit> -n 50 --no-pager`.",
            "Confirm something listens on the upstream address: `ss -ltnp` (TCP) or `ls -l <socket>` (unix).",
            "Compare the proxy's upstream (`proxy_pass`/`fastcgi_pass`) with the address the app binds.",
        ),
    ),
    CatalogEntry(
        "upstream_crashed",
        "Upstream accepted the request, then died",
        "The backend took the connection and closed or reset it before a complete answer: a worker "
        "crashed, was killed, or was recycled mid-request.",
        (502, 503),
        (
            "Read the app server log around the time of the error for crashes, signals and restarts.",
            "Look for killed workers: `journalctl -k | grep -i -E 'killed process|segfault'`.",
            "Check worker recycling settings (max-requests, request_terminate_timeout) and keep-alive timeouts.",
        ),
    ),
    CatalogEntry(
        "upstream_timeout",
        "Upstream accepted but did not answer in time",
        "The backend is reachable but too slow: the proxy's read timeout (or the app server's own "
        "worker timeout) expired before the response headers came back.",
        (504, 502, 524),
        (
            "Find what the slow requests wait on: the database (`pg_stat_activity`), an outside API, locks.",
            "Compare proxy_read_timeout / fastcgi_read_timeout with the app server's own timeout.",
            "Check the app server's workers: are they all busy (saturation) or stuck in one call?",
        ),
        explains=("upstream_crashed",),
    ),
    CatalogEntry(
        "upstream_connect_timeout",
        "TCP connect to the upstream timed out",
        "The proxy's SYN got no answer within the connect timeout: a firewall drops packets, the host is "
        "down, or the backend's accept backlog is full.",
        (504, 503),
        (
            "Test the path from the proxy host: `curl -v --connect-timeout 3 http://<upstream>/`.",
            "Check firewall rules / security groups between the proxy and the upstream.",
            "Check the upstream's listen backlog: `ss -ltn` shows Recv-Q at the backlog limit when full.",
        ),
    ),
    CatalogEntry(
        "upstream_bad_response",
        "Upstream answered with something that is not valid HTTP",
        "The backend answered, but the proxy rejected the answer: headers too big for the buffers, a "
        "malformed header, or the wrong protocol on that port.",
        (502,),
        (
            "If nginx says 'too big header': raise proxy_buffer_size / fastcgi_buffer_size (and *_buffers).",
            "Probe the upstream directly and inspect its raw response: `curl -sv http://<upstream>/ -o /dev/null`.",
            "Check that the proxy speaks the backend's protocol (HTTP vs FastCGI vs uwsgi vs TLS).",
        ),
    ),
    CatalogEntry(
        "upstream_tls_error",
        "TLS between the proxy and the upstream failed",
        "The proxy could not complete a TLS handshake with the backend, or rejected its certificate.",
        (502,),
        (
            "Inspect the upstream's certificate: `openssl s_client -connect <upstream> -servername <name>`.",
            "Check proxy_ssl_server_name / proxy_ssl_name (SNI) and proxy_ssl_protocols.",
            "Make sure the upstream port really speaks TLS (https:// to a plain-HTTP port fails).",
        ),
    ),
    CatalogEntry(
        "dns_failure",
        "The upstream name cannot be resolved",
        "A name the proxy or the app connects to does not resolve (NXDOMAIN, SERVFAIL, no resolver).",
        (502, 500),
        (
            "Resolve the name from the failing host: `dig <name>` and `getent hosts <name>`.",
            "For nginx with variables in proxy_pass, configure `resolver` and check it answers.",
            "Check /etc/resolv.conf and the container's DNS (Docker service names exist only on its network).",
        ),
        explains=("app_exception",),
    ),
    CatalogEntry(
        "permission_denied",
        "The proxy or the app may not open a socket or file",
        "A permission check failed: the worker user cannot connect to a unix socket or read a file "
        "(mode, owner, SELinux/AppArmor).",
        (502, 500, 403),
        (
            "Check the socket or file: `ls -l <path>` and the user the proxy workers run as.",
            "For php-fpm sockets set listen.owner/listen.group/listen.mode to the web server's user.",
            "Look for SELinux denials: `ausearch -m avc -ts recent` (httpd_can_network_connect).",
        ),
        explains=("app_exception",),
    ),
    CatalogEntry(
        "fd_exhaustion",
        "Out of file descriptors or worker connections",
        "A process hit its open-file limit or the proxy ran out of connection slots.",
        (500, 502),
        (
            "Compare usage with limits: `cat /proc/<pid>/limits` and `ls /proc/<pid>/fd | wc -l`.",
            "Raise LimitNOFILE / worker_rlimit_nofile and worker_connections together.",
            "Look for a descriptor leak: connections that never close (`ss -s`, CLOSE_WAIT counts).",
        ),
        explains=("app_exception", "upstream_crashed"),
    ),
    CatalogEntry(
        "port_exhaustion",
        "No free ephemeral ports toward the upstream",
        "Too many short connections in TIME_WAIT to one destination: connect() cannot pick a local port.",
        (502,),
        (
            "Count sockets: `ss -s` and `ss -tan state time-wait | wc -l`.",
            "Enable upstream keep-alive (nginx `keepalive` in the upstream block, proxy_http_version 1.1).",
            "Widen net.ipv4.ip_local_port_range; add upstream addresses to spread connections.",
        ),
        explains=("app_exception", "upstream_down"),
    ),
    CatalogEntry(
        "disk_full",
        "A filesystem or its inodes are full",
        "Writes fail with ENOSPC: logs, temp files, sessions, uploads or the database cannot be written.",
        (500, 502, 503),
        (
            "Find the full filesystem: `df -h` and `df -i`.",
            "Find what grew: `du -xh --max-depth=2 <mount> | sort -h | tail`.",
            "Free space safely (rotate/compress logs, clean temp/cache), then restart what failed.",
        ),
        explains=("app_exception", "upstream_crashed", "db_down"),
    ),
    CatalogEntry(
        "oom_kill",
        "The kernel OOM killer killed a process",
        "Memory ran out and the kernel (or a cgroup limit) killed the app server or the database.",
        (502, 500, 503),
        (
            "Find what was killed and when: `journalctl -k | grep -i -E 'out of memory|oom'`.",
            "Check memory headroom: `free -m`, and the unit's MemoryMax / container memory limit.",
            "Reduce worker count or per-worker memory; look for a leak (memory growth before the kill).",
        ),
        explains=("upstream_crashed", "upstream_down", "db_down", "app_exception"),
    ),
    CatalogEntry(
        "db_down",
        "The database does not accept connections",
        "The database server is stopped, restarting, in recovery, or unreachable from the app.",
        (500, 503, 502),
        (
            "Check the server: `pg_isready -h <host>` / `mysqladmin ping` and `systemctl status postgresql`.",
            "Read the database log for the reason it stopped (OOM kill, disk full, crash recovery).",
            "Confirm the app's connection settings (host, port, socket path) match where it listens.",
        ),
        explains=("app_exception", "upstream_crashed"),
    ),
    CatalogEntry(
        "db_connections_exhausted",
        "The database is out of connections",
        "Every connection slot is taken (max_connections / max_user_connections) or the app's pool "
        "timed out waiting for one.",
        (500, 503),
        (
            "Count connections by state and client: `SELECT state, count(*) FROM pg_stat_activity GROUP BY 1`.",
            "Look for idle-in-transaction sessions and connection leaks in the app.",
            "Put a pooler (PgBouncer) in front or size the app pools below max_connections.",
        ),
        explains=("app_exception",),
    ),
    CatalogEntry(
        "db_slow_query",
        "A slow query or lock wait holds requests past the timeout",
        "Requests wait on the database: long-running statements, lock waits or statement timeouts.",
        (504, 500),
        (
            "List long-running queries: `SELECT pid, now()-query_start, state, query FROM pg_stat_activity "
            "WHERE state <> 'idle' ORDER BY 2 DESC`.",
            "Find blockers: `SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`.",
            "EXPLAIN the slow statement; add the missing index or cancel the blocker (pg_cancel_backend).",
        ),
        explains=("upstream_timeout", "app_exception"),
    ),
    CatalogEntry(
        "worker_saturation",
        "Every worker is busy",
        "The app server has no free worker (php-fpm max_children, gunicorn/uwsgi workers, Apache "
        "MaxRequestWorkers): requests queue until the proxy gives up.",
        (503, 504, 502),
        (
            "Check worker usage: php-fpm status page, `ps` worker count, Apache server-status.",
            "Find why requests are slow (database, outside APIs) before adding workers.",
            "Raise the worker limit only if memory allows (count × per-worker RSS < free memory).",
        ),
        explains=("upstream_timeout", "upstream_crashed"),
    ),
    CatalogEntry(
        "rate_limited",
        "The proxy is shedding load on purpose",
        "A rate or connection limit (limit_req, limit_conn, a deny/tarpit rule) rejected the requests.",
        (503, 429),
        (
            "See which zone fires and for whom: the `limiting requests ... by zone` lines and client addresses.",
            "Decide whether it is an attack/bot (keep the limit) or legitimate traffic (raise rate/burst).",
            "Return 429 instead of 503 for rate limits (`limit_req_status 429`) so clients back off correctly.",
        ),
    ),
    CatalogEntry(
        "maintenance_mode",
        "The site is in deliberate maintenance",
        "Someone switched the site or its backends to maintenance (flag file, framework 'down' mode, servers drained).",
        (503,),
        (
            "Check who started maintenance and for how long (deploy logs, the team channel).",
            "Look for the flag: `.maintenance` (WordPress), `storage/framework/down` (Laravel), MAINT servers.",
            "End it when the work is done (remove the flag, `artisan up`, re-enable the servers).",
        ),
    ),
    CatalogEntry(
        "app_exception",
        "The application raised an error",
        "The request reached the application and it failed: an unhandled exception or fatal error.",
        (500,),
        (
            "Read the full traceback / fatal error in the app log; find the request that triggers it.",
            "Check what changed: the last deploy, configuration, data.",
            "Roll back the last deploy if the error started with it.",
        ),
    ),
    CatalogEntry(
        "config_error",
        "Broken server or application configuration",
        "A configuration the server or app needs is invalid or missing (syntax error, unknown directive, "
        "redirect loop, missing setting).",
        (500, 502, 503),
        (
            "Test the configuration: `nginx -t`, `apachectl configtest`, `php-fpm -t`.",
            "Diff the configuration against the last working version.",
            "Check environment variables and secrets the app expects at start-up.",
        ),
        explains=("upstream_down", "app_exception"),
    ),
    CatalogEntry(
        "cpu_starvation",
        "The host is CPU-starved",
        "Runnable work far exceeds the CPUs (or the hypervisor steals them): everything is slow.",
        (504, 503),
        (
            "Compare the load average with the core count: `uptime` and `nproc`.",
            "Find the consumers: `top -b -n 1 -o %CPU | head -20`; check steal time (`st`).",
            "Scale out, move batch work off the host, or limit the runaway process.",
        ),
        explains=(),
    ),
    CatalogEntry(
        "external_dependency",
        "A third-party service behind the app is slow or failing",
        "The application waits on an outside API or service that times out or refuses.",
        (504, 500, 502),
        (
            "Find the dependency in the app log (host name, URL) and probe it from the app host.",
            "Set short client timeouts and a circuit breaker around the call.",
            "Check the provider's status page.",
        ),
        explains=("upstream_timeout", "app_exception"),
    ),
    CatalogEntry(
        "cdn_origin_unreachable",
        "The CDN cannot reach the origin",
        "Cloudflare (or another CDN) could not connect to the origin: refused (521), timed out (522) or "
        "no route (523).",
        (521, 522, 523),
        (
            "Check that the origin web server runs and listens on 80/443: `ss -ltnp`.",
            "Make sure the origin firewall allows the CDN's IP ranges.",
            "Check the DNS record's origin address in the CDN dashboard.",
        ),
    ),
    CatalogEntry(
        "cdn_origin_tls",
        "TLS between the CDN and the origin failed",
        "Cloudflare could not complete TLS with the origin (525) or could not validate its certificate (526).",
        (525, 526),
        (
            "Check the origin certificate: `openssl s_client -connect <origin>:443 -servername <host>`.",
            "Renew an expired certificate or install a Cloudflare Origin CA certificate.",
            "Check the SSL mode (Full vs Full strict) and that port 443 answers with TLS.",
        ),
    ),
    CatalogEntry(
        "cdn_bad_origin_response",
        "The origin sent the CDN an empty or invalid answer",
        "Cloudflare got an empty, unknown or malformed response from the origin (520).",
        (520,),
        (
            "Look for origin crashes or resets at the time of the 520s in the origin's logs.",
            "Check response header size (Cloudflare rejects headers over its limit).",
            "Make sure the origin firewall does not reset connections from the CDN's IPs.",
        ),
        explains=("upstream_crashed",),
    ),
)

CATALOG: dict[str, CatalogEntry] = {entry.id: entry for entry in _ENTRIES}

#: The usual suspects per status when there is no evidence, most likely first, with prior confidences.
STATUS_PRIORS: dict[int, tuple[tuple[str, float], ...]] = {
    500: (("app_exception", 0.3), ("db_down", 0.15), ("disk_full", 0.12), ("config_error", 0.1)),
    502: (("upstream_down", 0.3), ("upstream_crashed", 0.2), ("oom_kill", 0.1), ("permission_denied", 0.08)),
    503: (("worker_saturation", 0.25), ("rate_limited", 0.2), ("maintenance_mode", 0.15), ("upstream_down", 0.12)),
    504: (
        ("upstream_timeout", 0.3),
        ("db_slow_query", 0.18),
        ("worker_saturation", 0.12),
        ("upstream_connect_timeout", 0.1),
    ),
    520: (("cdn_bad_origin_response", 0.35), ("upstream_crashed", 0.12)),
    521: (("cdn_origin_unreachable", 0.4), ("upstream_down", 0.15)),
    522: (("cdn_origin_unreachable", 0.4), ("upstream_connect_timeout", 0.12)),
    523: (("cdn_origin_unreachable", 0.4), ("dns_failure", 0.12)),
    524: (("upstream_timeout", 0.35), ("db_slow_query", 0.12)),
    525: (("cdn_origin_tls", 0.4),),
    526: (("cdn_origin_tls", 0.4),),
    429: (("rate_limited", 0.4),),
    403: (("permission_denied", 0.3), ("rate_limited", 0.1)),
}


#: Without a status: the most common causes of 5xx outages overall, at very low confidence.
ANY_5XX_PRIORS: tuple[tuple[str, float], ...] = (
    ("upstream_down", 0.12),
    ("upstream_timeout", 0.1),
    ("app_exception", 0.08),
)


def priors_for(status: int | None) -> tuple[tuple[str, float], ...]:
    """The usual suspects for a status (its class's when the exact code has none; 5xx in general without one)."""
    if status is None:
        return ANY_5XX_PRIORS
    if status in STATUS_PRIORS:
        return STATUS_PRIORS[status]
    if 500 <= status <= 599:
        return STATUS_PRIORS[500]
    return ()
