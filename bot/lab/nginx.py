"""nginx in front of the app's gunicorn socket, with its own prefix under the lab directory.

The master runs ``nginx -p <lab>/nginx -c <lab>/nginx/nginx.conf`` so ``nginx -T -c ...`` of the running
master shows the real config. As root the workers run as ``nobody``, which is what makes the socket-mode
scenario (``chmod 600`` on the gunicorn socket) a real ``(13: Permission denied)``.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from bot.lab.errors import LabError
from bot.lab.paths import LabPaths
from bot.lab.process import children, is_root, pid_alive, read_pid_file, run, signal_pid, terminate, wait_until

NGINX = "/usr/sbin/nginx"
PROXY_READ_TIMEOUT = 2  # seconds; the app's "sleep" outlasts it
RETRY_AFTER = 120  # seconds, sent with the maintenance page
RATE_LIMIT = "limit_req zone=lab_rate;\n"

MAINTENANCE_PAGE = """<!doctype html>
<html><head><title>Down for maintenance</title></head>
<body><h1>Down for maintenance</h1><p>We'll be back shortly.</p></body></html>
"""


def binary() -> str:
    found = NGINX if Path(NGINX).exists() else shutil.which("nginx")
    if not found:
        raise LabError("nginx is not installed (Debian: apt-get install nginx)")
    return found


def nginx_conf(paths: LabPaths, port: int) -> str:
    user = "user nobody nogroup;\n" if is_root() else ""
    tmp = paths.nginx / "tmp"
    return f"""# incident-bot fault lab: nginx -> gunicorn (unix socket) -> PostgreSQL
{user}worker_processes 1;
pid {paths.pid_file("nginx")};
error_log {paths.nginx_error_log} info;

events {{
    worker_connections 128;
}}

http {{
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    log_format lab '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                   '"$http_referer" "$http_user_agent" upstream_status=$upstream_status '
                   'request_time=$request_time upstream_response_time=$upstream_response_time '
                   'upstream_addr=$upstream_addr';
    access_log {paths.nginx_access_log} lab;

    limit_req_zone $binary_remote_addr zone=lab_rate:1m rate=1r/m;

    upstream gunicorn {{
        server unix:{paths.gunicorn_socket} fail_timeout=0;
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name lab localhost;
        root {paths.html};

        proxy_connect_timeout {PROXY_READ_TIMEOUT}s;
        proxy_send_timeout {PROXY_READ_TIMEOUT}s;
        proxy_read_timeout {PROXY_READ_TIMEOUT}s;

        location / {{
            if (-f {paths.maintenance_flag}) {{
                error_page 503 /maintenance.html;
                return 503;
            }}
            include {paths.nginx_ratelimit};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_redirect off;
            proxy_pass http://gunicorn;
        }}

        location = /maintenance.html {{
            internal;
            add_header Retry-After {RETRY_AFTER} always;
        }}
    }}
}}
"""


def command(paths: LabPaths) -> list[str]:
    return [binary(), "-p", f"{paths.nginx}/", "-c", str(paths.nginx_conf), "-e", str(paths.nginx_error_log)]


def write_config(paths: LabPaths, port: int) -> None:
    for sub in ("tmp", "html"):
        (paths.nginx / sub).mkdir(parents=True, exist_ok=True)
        (paths.nginx / sub).chmod(0o755)
    paths.nginx_error_log.parent.mkdir(parents=True, exist_ok=True)
    (paths.html / "maintenance.html").write_text(MAINTENANCE_PAGE)
    (paths.html / "maintenance.html").chmod(0o644)
    paths.nginx_ratelimit.write_text("# rate_limited scenario: `lab break rate_limited` puts a limit_req here\n")
    paths.nginx_conf.write_text(nginx_conf(paths, port))


def start(paths: LabPaths, port: int) -> int:
    """Write the config, check it (``nginx -t``) and start the master (it daemonizes itself)."""
    write_config(paths, port)
    run([*command(paths), "-t", "-q"])
    run(command(paths))
    pid_file = paths.pid_file("nginx")
    wait_until(lambda: pid_alive(read_pid_file(pid_file)), timeout=10, what="the nginx master")
    pid = read_pid_file(pid_file)
    assert pid is not None
    wait_until(lambda: bool(children(pid)), timeout=10, what="nginx workers")
    return pid


def reload(paths: LabPaths, pid: int) -> None:
    """``nginx -s reload`` by signal, and wait until every old worker is gone and new ones serve."""
    run([*command(paths), "-t", "-q"])
    old = set(children(pid))
    if not signal_pid(pid, signal.SIGHUP):
        raise LabError("nginx is not running")
    wait_until(lambda: bool(set(children(pid))) and not (set(children(pid)) & old), timeout=15,
               what="nginx to reload")


def set_rate_limit(paths: LabPaths, pid: int, on: bool) -> None:
    text = RATE_LIMIT if on else "# rate_limited scenario: `lab break rate_limited` puts a limit_req here\n"
    paths.nginx_ratelimit.write_text(text)
    reload(paths, pid)


def stop(pid: int | None) -> None:
    terminate(pid)
