"""The ``incident-bot`` command line: a thin Typer layer over the services.

Exit codes (DESIGN §4.1): 0 success; 1 the run worked but found a problem worth a non-zero (documented
per command); 2 bad usage or bad input, with one line on stderr and no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bot.adapters.console import render_catalog, render_diagnosis
from bot.core.models import parse_status
from bot.diagnosis.rules import RULES
from bot.errors import BotError
from bot.evidence.registry import load
from bot.services.explain import explain_files

SAMPLES = Path(__file__).parent / "samples"

app = typer.Typer(
    name="incident-bot",
    help="Chat-ops incident bot for HTTP 5xx outages: reads the evidence and names the cause.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXPLAIN_HELP = """Read logs and command outputs and say why a site answers 5xx.

Reads FILEs (or standard input when none is given, or for `-`): nginx/Apache/HAProxy logs, php-fpm,
gunicorn, uWSGI and Node logs, tracebacks, PostgreSQL/MySQL errors, and the output of df, ss -s,
free, uptime, systemctl, pg_isready, curl -w, dig, openssl x509 and nginx -t. A block may start with a
'### <what it is>' header line (e.g. '### $ systemctl is-active gunicorn'); headers help but are
optional. Prints the most likely cause with the evidence lines that support it and next steps, then
the other candidates. Exits 0 when the input was read (whatever it shows), 2 on bad input.

Example:

  incident-bot explain --status 502 /var/log/nginx/error.log
"""


@app.command(help=EXPLAIN_HELP)
def explain(
    files: Annotated[list[str] | None, typer.Argument(metavar="[FILE]...", show_default=False)] = None,
    status: Annotated[
        str | None, typer.Option("--status", "-s", metavar="CODE", help="HTTP status the site answers (400-599).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON (DESIGN §4.2).")] = False,
    list_causes: Annotated[
        bool, typer.Option("--list-causes", help="List the cause catalog, the evidence for each and the rules.")
    ] = False,
) -> None:
    registry = load()
    if list_causes:
        render_catalog(registry.signals(), RULES, Console(highlight=False, soft_wrap=True))
        return
    code = parse_status(status)
    diagnosis = explain_files(files or [], code, registry=registry)
    if as_json:
        sys.stdout.write(json.dumps(diagnosis.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        render_diagnosis(diagnosis, Console(highlight=False, soft_wrap=True))


@app.command(help="Run the main job on bundled evidence: explain a real 502 captured from nginx and gunicorn.")
def demo() -> None:
    sample = SAMPLES / "502-upstream-down.txt"
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"$ incident-bot explain --status 502 {sample.name}", markup=False)
    diagnosis = explain_files([str(sample)], 502, registry=load())
    render_diagnosis(diagnosis, console)


def main() -> None:
    """Entry point: run the app and turn every usage problem into one line on stderr and exit 2.

    Typer vendors its own copy of click, so its exceptions are recognised by shape (an ``exit_code``
    and a ``format_message()``), not by importing a private module.
    """
    try:
        app(standalone_mode=False)
    except BotError as exc:
        sys.stderr.write(f"incident-bot: error: {exc.user_message()}\n")
        sys.exit(exc.exit_code)
    except (typer.Exit, typer.Abort) as exc:
        sys.exit(getattr(exc, "exit_code", 1) if isinstance(exc, typer.Exit) else 130)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        format_message = getattr(exc, "format_message", None)
        if not callable(format_message) or not isinstance(getattr(exc, "exit_code", None), int):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(str(format_message()) + "\n")
            sys.exit(0)
        message = " ".join(str(format_message()).split())
        sys.stderr.write(f"incident-bot: error: {message} (see --help)\n")
        sys.exit(2)
