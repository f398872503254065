"""The ``incident-bot`` command line: a thin Typer layer over the services.

Exit codes (DESIGN §4.1): 0 success; 1 the run worked but found a problem worth a non-zero (documented
per command); 2 bad usage or bad input, with one line on stderr and no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from bot.adapters.console import render_catalog, render_diagnosis
from bot.core.models import parse_status
from bot.diagnosis.rules import RULES
from bot.errors import BotError, UsageError
from bot.evidence.registry import load
from bot.services.explain import explain_files

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core.store import Store
    from bot.lab import Lab
    from bot.services.incidents import ActionResult

T = TypeVar("T")

SAMPLES = Path(__file__).parent / "samples"


class UsageErrorNoIncident(UsageError):
    code = "no_such_incident"

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"no incident {incident_id!r} in the store")

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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List healthy findings too.")] = False,
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
        render_diagnosis(diagnosis, Console(highlight=False, soft_wrap=True), verbose=verbose)


DEMO_HELP = """Run the main job end to end on this machine, with nothing to configure.

Starts the fault lab (real sshd, nginx, gunicorn and PostgreSQL on 127.0.0.1) in a new directory
under /tmp and `serve` on SQLite with the console chat, breaks the lab (SCENARIO, by default
upstream_down: a 502), delivers the alert through the Alertmanager webhook, and shows the incident
thread as it is posted: opened, the findings read over SSH, the suggested cause with its evidence.
Then it repairs the lab, resolves the incident and stops everything it started (Ctrl-C too). The
narration and the thread go to stderr, a one-line summary to stdout.

Exits 0 when the bot named the cause the lab reproduced and nothing was left running; 1 otherwise,
and 1 when the lab cannot run here (it names the missing Debian package and how to install it, then
explains a captured 502 instead); 2 for an unknown scenario; 130 when interrupted.
"""


@app.command(help=DEMO_HELP)
def demo(
    scenario: Annotated[
        str, typer.Option("--scenario", metavar="SCENARIO", help="What to break (`lab scenarios` lists them).")
    ] = "upstream_down",
) -> None:
    from bot.demo import DemoInterrupted, LabUnavailable, run_demo  # noqa: PLC0415 - the lab and serve stack

    err = Console(stderr=True, highlight=False)
    try:
        report = run_demo(scenario, err)
    except LabUnavailable as exc:
        err.print(f"incident-bot demo: {exc.user_message()}", markup=False, style="bold red", soft_wrap=True)
        if exc.install_hint:
            err.print(f"to install: {exc.install_hint}", markup=False, soft_wrap=True)
        err.print(
            "Not the live demo: instead, `explain` on evidence captured from a real lab (no SSH, no serve):",
            markup=False, style="bold", soft_wrap=True,
        )  # fmt: skip
        sample = SAMPLES / "502-upstream-down.txt"
        console = Console(highlight=False, soft_wrap=True)
        console.print(f"$ incident-bot explain --status 502 {sample.name}", markup=False)
        render_diagnosis(explain_files([str(sample)], 502, registry=load()), console)
        raise typer.Exit(1) from None
    except DemoInterrupted as exc:
        sys.stderr.write(f"incident-bot demo: {exc.user_message()}\n")
        raise typer.Exit(130) from None
    sys.stdout.write(report.summary() + "\n")
    if not report.ok:
        raise typer.Exit(1)


DIAGNOSE_HELP = """Run the 5xx checklist over SSH on TARGET and name the cause.

TARGET is a host or service of the configuration, an alias of the OpenSSH client config
(--ssh-config), or [user@]host[:port]. Progress goes to stderr, findings and the ranked causes to
stdout (--json: the same shape as explain --json, plus target). Host keys are always verified against
--known-hosts (or the configuration's). Exits 0 when the run worked (whatever it found), 1 when no
host could be reached, 2 on bad input.

Example (the fault lab):

  incident-bot diagnose lab --config /var/tmp/incident-bot/lab/incident-bot.yaml --status 502
"""


@app.command(help=DIAGNOSE_HELP)
def diagnose(
    target: Annotated[str, typer.Argument(metavar="TARGET")],
    status: Annotated[
        str | None, typer.Option("--status", "-s", metavar="CODE", help="HTTP status the site answers.")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="The failing URL (probed from the proxy host).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE", help="Configuration file.")] = None,
    ssh_config: Annotated[
        str | None, typer.Option("--ssh-config", metavar="FILE", help="OpenSSH client config to honour.")
    ] = None,
    identity: Annotated[str | None, typer.Option("--identity", "-i", metavar="KEY", help="Private key.")] = None,
    known_hosts: Annotated[
        str | None, typer.Option("--known-hosts", metavar="FILE", help="known_hosts to verify host keys against.")
    ] = None,
    runbook: Annotated[
        list[str] | None, typer.Option("--runbook", "-r", metavar="NAME", help="Run only these runbooks.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List healthy findings too.")] = False,
) -> None:
    import asyncio  # noqa: PLC0415 - only diagnose needs the event loop and the SSH stack

    from bot.adapters.console import ProgressPrinter  # noqa: PLC0415
    from bot.app import DiagnoseRequest, run_diagnose  # noqa: PLC0415
    from bot.config import load_settings  # noqa: PLC0415
    from bot.services.targets import Overrides  # noqa: PLC0415

    code = parse_status(status)
    settings = load_settings(config)
    request = DiagnoseRequest(
        target=target,
        status=code,
        url=url,
        runbooks=tuple(runbook or ()),
        overrides=Overrides(identity=identity, known_hosts=known_hosts, ssh_config=ssh_config),
    )
    printer = ProgressPrinter(Console(stderr=True, highlight=False, soft_wrap=True))
    result = asyncio.run(run_diagnose(request, settings, printer))
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        render_diagnosis(result, Console(highlight=False, soft_wrap=True), verbose=verbose)
    if printer.hosts and printer.failed_hosts >= printer.hosts:
        raise typer.Exit(1)


@app.command(help="Run the HTTP server: alert webhooks in, incidents stored and readable (see the README).")
def serve(
    config: Annotated[str | None, typer.Option("--config", metavar="FILE", help="Configuration file.")] = None,
) -> None:
    import asyncio  # noqa: PLC0415 - only serve needs the server stack

    from bot.config import load_settings  # noqa: PLC0415
    from bot.serve import serve as run_server  # noqa: PLC0415

    settings = load_settings(config)
    try:
        import uvloop  # noqa: PLC0415 - installed with uvicorn[standard]; ~7 % less CPU per webhook
    except ImportError:
        asyncio.run(run_server(settings))
    else:
        uvloop.run(run_server(settings))


db_app = typer.Typer(help="The incident database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade", help="Apply the database migrations (SQLite or PostgreSQL from the configuration).")
def db_upgrade(
    config: Annotated[str | None, typer.Option("--config", metavar="FILE", help="Configuration file.")] = None,
) -> None:
    from bot.adapters.db import upgrade_blocking  # noqa: PLC0415
    from bot.config import load_settings  # noqa: PLC0415

    settings = load_settings(config)
    upgrade_blocking(settings.database_url)
    sys.stdout.write("database is up to date\n")


incidents_app = typer.Typer(help="Read the incidents in the store.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")


def _on_store(config: str | None, work: Callable[[Store, Settings], Awaitable[T]]) -> T:
    """Run ``work`` on the configured store (the embedded SQLite one migrated first), then close it."""
    import asyncio  # noqa: PLC0415

    from bot.adapters.db import SqlStore, create_engine, upgrade  # noqa: PLC0415
    from bot.config import load_settings  # noqa: PLC0415

    settings = load_settings(config)

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            if engine.dialect.name == "sqlite":
                await upgrade(engine)
            return await work(SqlStore(engine), settings)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _store_call(config: str | None, what: str, incident_id: str | None = None) -> object:
    async def work(store: Store, _: Settings) -> object:
        if what == "list":
            return await store.list_incidents(limit=50)
        assert incident_id is not None
        found = await store.get_incident(incident_id)
        if found is None:
            return None
        timeline = await store.timeline(incident_id)
        # delivery per chat target (issue #9 item 11: degraded delivery)
        from bot.core.delivery import delivery_report  # noqa: PLC0415

        delivery = delivery_report(incident_id, timeline, await store.pending_messages())
        return found, timeline, await store.get_diagnosis(incident_id), delivery

    return _on_store(config, work)


@incidents_app.command("list", help="The latest incidents, newest first.")
def incidents_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE")] = None,
) -> None:
    found = _store_call(config, "list")
    assert isinstance(found, list)
    if as_json:
        sys.stdout.write(json.dumps({"incidents": [i.model_dump(mode="json") for i in found]}, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    if not found:
        console.print("no incidents", markup=False)
    for incident in found:
        status = incident.status or "-"
        console.print(
            f"#{incident.id:<6} {incident.state.value:<12} {status!s:<4} {incident.service or '(unrouted)':<16} "
            f"{incident.opened_at:%Y-%m-%d %H:%M}Z  {incident.title}",
            markup=False,
        )


@incidents_app.command("show", help="One incident with its timeline.")
def incidents_show(
    incident_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE")] = None,
) -> None:
    found = _store_call(config, "show", incident_id)
    if found is None:
        raise UsageErrorNoIncident(incident_id)
    assert isinstance(found, tuple)
    incident, timeline, diagnosis, delivery = found
    if as_json:
        body = {**incident.model_dump(mode="json"), "timeline": [e.model_dump(mode="json") for e in timeline]}
        body["delivery"] = {target: state.model_dump(mode="json") for target, state in delivery.items()}
        if diagnosis is not None:
            body["diagnosis"] = diagnosis
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Incident #{incident.id}: {incident.title}", markup=False, style="bold")
    console.print(
        f"state {incident.state.value}, status {incident.status or '-'}, service {incident.service or '(unrouted)'}",
        markup=False,
    )
    for event in timeline:
        console.print(f"  {event.at:%Y-%m-%d %H:%M:%S}Z  {event.kind:<16} {event.text}", markup=False)
    for state in delivery.values():  # delivery per chat target (issue #9 item 11)
        since = f" since {state.since:%Y-%m-%d %H:%M:%S}Z" if state.since is not None else ""
        error = f", last error: {state.last_error}" if state.state == "degraded" and state.last_error else ""
        style = "bold yellow" if state.state == "degraded" else None
        line = f"delivery to {state.label}: {state.state}{since}, {state.waiting} waiting{error}"
        console.print(line, markup=False, style=style)
    if diagnosis is not None:
        _print_diagnosis(console, diagnosis)


def _print_diagnosis(console: Console, diagnosis: dict[str, Any]) -> None:
    """The stored diagnosis: its top cause and the evidence quoted for it."""
    causes = diagnosis.get("causes") or []
    if not causes:
        console.print("diagnosis: no cause found", markup=False)
        return
    top = causes[0]
    console.print(
        f"diagnosis: {top.get('title', top.get('id'))} ({top.get('id')}, {float(top.get('confidence', 0)):.0%})",
        markup=False,
        style="bold",
    )
    for line in top.get("evidence") or []:
        console.print(f"  > {line}", markup=False)


def _default_actor() -> str:
    import getpass  # noqa: PLC0415

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _act(config: str | None, incident_id: str, action: str, actor: str) -> ActionResult:
    from datetime import UTC, datetime  # noqa: PLC0415

    from bot.services.incidents import IncidentService  # noqa: PLC0415
    from bot.services.routing import group_key, route  # noqa: PLC0415

    async def work(store: Store, settings: Settings) -> ActionResult:
        service = IncidentService(
            store, route=lambda a: route(a, settings), group=group_key, clock=lambda: datetime.now(UTC)
        )
        if action == "ack":
            return await service.acknowledge(incident_id, actor)
        return await service.resolve(incident_id, actor)

    return _on_store(config, work)


ActorOption = Annotated[
    str | None, typer.Option("--actor", metavar="NAME", help="Who does it (default: cli:<your login>).")
]


@incidents_app.command(
    "ack", help="Acknowledge an incident. Exits 0 when acknowledged (or already was), 1 when it is already resolved."
)
def incidents_ack(
    incident_id: Annotated[str, typer.Argument(metavar="ID")],
    actor: ActorOption = None,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE")] = None,
) -> None:
    result = _act(config, incident_id, "ack", actor or _default_actor())
    incident = result.incident
    if result.outcome == "not_found" or incident is None:
        raise UsageErrorNoIncident(incident_id)
    if result.outcome == "already_resolved":
        sys.stderr.write(f"incident-bot: incident #{incident_id} is already resolved\n")
        raise typer.Exit(1)
    if result.outcome == "already_acknowledged":
        when = f" at {incident.acknowledged_at:%Y-%m-%d %H:%M:%S}Z" if incident.acknowledged_at else ""
        sys.stdout.write(f"incident #{incident_id} was already acknowledged by {incident.acknowledged_by}{when}\n")
        return
    sys.stdout.write(f"incident #{incident_id} acknowledged by {incident.acknowledged_by}\n")


@incidents_app.command("resolve", help="Resolve an incident by hand. Exits 1 when it was already resolved.")
def incidents_resolve(
    incident_id: Annotated[str, typer.Argument(metavar="ID")],
    actor: ActorOption = None,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE")] = None,
) -> None:
    result = _act(config, incident_id, "resolve", actor or _default_actor())
    if result.outcome == "not_found" or result.incident is None:
        raise UsageErrorNoIncident(incident_id)
    if result.outcome == "already_resolved":
        sys.stderr.write(f"incident-bot: incident #{incident_id} is already resolved\n")
        raise typer.Exit(1)
    sys.stdout.write(f"incident #{incident_id} resolved\n")


class ExportFormat(StrEnum):
    markdown = "markdown"
    json = "json"


@incidents_app.command(
    "export", help="A postmortem skeleton of an incident: timeline, time to acknowledge and resolve, the cause."
)
def incidents_export(
    incident_id: Annotated[str, typer.Argument(metavar="ID")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="markdown or json.")] = ExportFormat.markdown,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE")] = None,
) -> None:
    from bot.services.export import to_json, to_markdown  # noqa: PLC0415

    found = _store_call(config, "show", incident_id)
    if found is None:
        raise UsageErrorNoIncident(incident_id)
    assert isinstance(found, tuple)
    incident, timeline, diagnosis, _delivery = found
    if fmt is ExportFormat.json:
        sys.stdout.write(json.dumps(to_json(incident, timeline, diagnosis), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(to_markdown(incident, timeline, diagnosis))


# -- oncall (issue #7) ------------------------------------------------------------------------------

ONCALL_HELP = """Who is on call for each schedule now (or at --at TIME), and when that changes.

Reads the oncall: section of the configuration and the overrides kept in the store (shared by every
replica of the bot). TIME is ISO 8601, e.g. 2026-03-29T09:00+02:00 (without an offset it is UTC).
Times are shown in each schedule's time zone. `oncall override USER DURATION` puts someone on call.
Exits 0; 1 when the configuration has no oncall: section; 2 on bad input.
"""

oncall_app = typer.Typer(help=ONCALL_HELP, invoke_without_command=True)
app.add_typer(oncall_app, name="oncall")


def _moment(value: str | None, option: str) -> Any:
    """An aware datetime from ISO 8601 (UTC when no offset is given); now when ``value`` is None."""
    from datetime import UTC, datetime  # noqa: PLC0415

    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{option}: {value[:60]!r} is not an ISO 8601 time like 2026-03-29T09:00+02:00") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _rota(config: str | None) -> Any:
    from bot.config import load_settings  # noqa: PLC0415
    from bot.services.paging import rota_from_settings  # noqa: PLC0415

    rota = rota_from_settings(load_settings(config))
    if rota is None:
        sys.stderr.write("incident-bot: no on-call rotation is configured (add an oncall: section, see the README)\n")
        raise typer.Exit(1)
    return rota


@oncall_app.callback(invoke_without_command=True)
def oncall(
    ctx: typer.Context,
    at: Annotated[
        str | None, typer.Option("--at", metavar="TIME", help="When to look (ISO 8601; default now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE", help="Configuration file.")] = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from bot.services.paging import local, oncall_now  # noqa: PLC0415

    when = _moment(at, "--at")
    rota = _rota(config)

    async def work(store: Store, _: Settings) -> list[Any]:
        return list(await store.overrides(when))

    overrides = _on_store(config, work)
    shifts = oncall_now(rota, overrides, when)
    if as_json:
        body = {
            "at": when.isoformat(),
            "schedules": [
                {"schedule": s.schedule, "time_zone": rota.schedules[s.schedule].zone.key, "person": s.person,
                 "by": s.by, "until": s.until.isoformat() if s.until else None, "then": s.then}
                for s in shifts
            ],
            "overrides": [o.model_dump(mode="json") for o in overrides],
        }  # fmt: skip
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    sys.stdout.write(f"on call at {when:%Y-%m-%d %H:%M:%S} UTC\n")
    width = max((len(s.schedule) for s in shifts), default=0)
    for shift in shifts:
        schedule = rota.schedules[shift.schedule]
        line = f"{shift.schedule:<{width}}  {shift.person or 'nobody'} ({shift.by})"
        if shift.until is not None:
            line += f" until {local(shift.until, schedule)} ({shift.until:%H:%M} UTC), then {shift.then or 'nobody'}"
        else:
            line += ", no change within 120 days"
        sys.stdout.write(line + "\n")
    for override in overrides:
        schedule = rota.schedules.get(override.schedule)
        if schedule is not None:
            sys.stdout.write(
                f"override: {override.person} on {override.schedule} from {local(override.starts_at, schedule)} "
                f"until {local(override.ends_at, schedule)} (set by {override.created_by})\n"
            )


@oncall_app.command(
    "override",
    help="Put USER (a name of oncall.people) on call for DURATION (30m, 2h, 1d) from now or --start, on the "
    "one schedule they belong to or --schedule. Kept in the store: every replica pages them.",
)
def oncall_override(
    user: Annotated[str, typer.Argument(metavar="USER")],
    duration: Annotated[str, typer.Argument(metavar="DURATION")],
    schedule: Annotated[str | None, typer.Option("--schedule", metavar="NAME", help="Which schedule.")] = None,
    start: Annotated[str | None, typer.Option("--start", metavar="TIME", help="From when (default now).")] = None,
    actor: ActorOption = None,
    config: Annotated[str | None, typer.Option("--config", metavar="FILE", help="Configuration file.")] = None,
) -> None:
    from bot.services.paging import add_override, local  # noqa: PLC0415

    now = _moment(None, "")
    begin = _moment(start, "--start")
    rota = _rota(config)

    async def work(store: Store, _: Settings) -> Any:
        return await add_override(
            store, rota, user, duration, schedule=schedule, start=begin, by=actor or _default_actor(), now=now
        )

    override = _on_store(config, work)
    shown = rota.schedules[override.schedule]
    sys.stdout.write(
        f"{override.person} is on call for {override.schedule} from {local(override.starts_at, shown)} "
        f"until {local(override.ends_at, shown)}\n"
    )


config_app = typer.Typer(help="The configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command(
    "reference", help="Print every setting (YAML path, type, default, meaning) as Markdown, from the model itself."
)
def config_reference() -> None:
    from bot.config_reference import reference  # noqa: PLC0415

    sys.stdout.write(reference())


@config_app.command(
    "check",
    help="Validate the configuration and open an SSH session to every host (runs `true`, nothing else). "
    "Prints one line per host; exits 1 when a host cannot be reached, 2 when the configuration is invalid.",
)
def config_check(
    config: Annotated[str | None, typer.Option("--config", metavar="FILE", help="Configuration file.")] = None,
) -> None:
    import asyncio  # noqa: PLC0415

    from bot.app import check_hosts  # noqa: PLC0415
    from bot.config import load_settings  # noqa: PLC0415

    settings = load_settings(config)
    source = settings.source or "built-in defaults"
    sys.stdout.write(
        f"configuration ok ({source}): {len(settings.hosts)} host(s), {len(settings.services)} service(s)\n"
    )
    checks = asyncio.run(check_hosts(settings))
    width = max((len(c.host) for c in checks), default=0)
    for check in checks:
        sys.stdout.write(f"{check.host:<{width}}  {check.detail}\n")
    if any(not c.ok for c in checks):
        raise typer.Exit(1)


runbooks_app = typer.Typer(help="The runbooks this installation has.", no_args_is_help=True)
app.add_typer(runbooks_app, name="runbooks")


@runbooks_app.command("list", help="Every runbook found (built-in and plugins), and the broken ones with why.")
def runbooks_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    from bot.runbook.registry import load as load_runbooks  # noqa: PLC0415

    catalog = load_runbooks()
    found = sorted(catalog.runbooks.values(), key=lambda r: r.name)
    if as_json:
        rows = [
            {"name": r.name, "title": r.title, "statuses": sorted(r.statuses), "roles": sorted(r.roles),
             "mutating": r.mutating}
            for r in found
        ]  # fmt: skip
        sys.stdout.write(json.dumps({"runbooks": rows, "broken": catalog.broken}, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    for rb in found:
        where = ", ".join(str(s) for s in sorted(rb.statuses)) or "any status"
        roles = ", ".join(sorted(rb.roles)) or "any host"
        changes = "; changes the host: runs after a second person approves it in chat" if rb.mutating else ""
        console.print(f"{rb.name:<18} {rb.title}  ({where}; {roles}{changes})", markup=False)
    for name, problem in catalog.broken.items():
        console.print(f"BROKEN {name}: {problem}", markup=False, style="red")


lab_app = typer.Typer(
    name="lab",
    help="The fault lab: real sshd, nginx, gunicorn and PostgreSQL on 127.0.0.1, broken on purpose.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(lab_app, name="lab")

LabDir = Annotated[
    Path | None,
    typer.Option(
        "--dir", metavar="DIR", help="Lab directory (default: $INCIDENT_BOT_LAB_DIR or ~/.cache/incident-bot/lab)."
    ),
]


def _lab(lab_dir: Path | None) -> Lab:
    # Imported here so the lab's dependencies (gunicorn, urllib) stay off the start-up path of `explain`.
    from bot.lab import Lab  # noqa: PLC0415

    return Lab(lab_dir)


@lab_app.command("up", help="Start the lab and print how to reach it (`lab status`).")
def lab_up(lab_dir: LabDir = None) -> None:
    sys.stdout.write(_lab(lab_dir).up().render())


@lab_app.command("break", help="Reproduce SCENARIO for real (`lab scenarios` lists them).")
def lab_break(scenario: Annotated[str, typer.Argument(metavar="SCENARIO")], lab_dir: LabDir = None) -> None:
    done = _lab(lab_dir).break_(scenario)
    sys.stdout.write(f"{done.name}: {done.does}; the site now answers {done.status} (cause: {done.cause})\n")


@lab_app.command("repair", help="Undo the scenario in force and wait for the site to answer 200.")
def lab_repair(lab_dir: LabDir = None) -> None:
    name = _lab(lab_dir).repair()
    sys.stdout.write(f"repaired {name}\n" if name else "nothing to repair\n")


@lab_app.command("down", help="Stop everything the lab started and unmount its tmpfs; logs are kept.")
def lab_down(
    lab_dir: LabDir = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also remove the lab directory.")] = False,
) -> None:
    _lab(lab_dir).down(purge=purge)


@lab_app.command("status", help="The SSH target and options for `diagnose`, the site, the logs, the processes.")
def lab_status(
    lab_dir: LabDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    status = _lab(lab_dir).status()
    if as_json:
        sys.stdout.write(json.dumps(status.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(status.render())


@lab_app.command("scenarios", help="List the scenarios: the cause each reproduces and the status nginx answers.")
def lab_scenarios() -> None:
    from bot.lab.scenarios import SCENARIOS  # noqa: PLC0415

    for s in SCENARIOS.values():
        sys.stdout.write(f"{s.name:<26} {s.status}  {s.does}\n")


GATE_HELP = """The forced command of the bot's SSH key on each diagnosed host.

Put it before the bot's key in the bot account's authorized_keys:

  restrict,command="/usr/local/bin/incident-bot gate" ssh-ed25519 AAAA... incident-bot

sshd then runs it for every session of that key; it reads the asked command line from
SSH_ORIGINAL_COMMAND and executes it (no shell) only if it is exactly a command line the installed
runbooks send, with paths under the allowed roots (--list shows both). Anything else exits 126 with
one line on stderr and in syslog (authpriv) saying why. --root adds a directory (an app's own logs,
/srv/shop/log) to every kind of path. --read-only also refuses every command that only a runbook which
changes the host sends (restart_unit, clear_cache): the safer choice when the bot must never change it.
"""


@app.command(help=GATE_HELP)
def gate(
    list_shapes: Annotated[bool, typer.Option("--list", help="Print the allowed command shapes and roots.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print them as JSON.")] = False,
    root: Annotated[
        list[str] | None, typer.Option("--root", metavar="DIR", help="Also allow paths under DIR (repeatable).")
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse the commands of runbooks that change the host.")
    ] = False,
) -> None:
    import os  # noqa: PLC0415 - the gate runs for every remote command: import only what it needs

    from bot import gate as forced  # noqa: PLC0415

    try:
        policy = forced.policy_for(root or [])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if list_shapes:
        sys.stdout.write(forced.listing(forced.installed(), policy, as_json=as_json, read_only=read_only))
        return
    raise typer.Exit(forced.run(os.environ, policy, read_only=read_only))


audit_app = typer.Typer(help="The tamper-evident audit log: commands, approvals, role decisions.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

AUDIT_VERIFY_HELP = """Check the audit log's hash chain and print the head hash and count to record.

Reads the store's audit table (the configuration's database) or, with --jsonl, a JSON-lines audit file
(the CLI's is ~/.local/state/incident-bot/audit.jsonl). Finds an edited, deleted, inserted or moved
entry; entries removed from the end are found only against a head recorded earlier (--expect-head).
Entries from before the chain existed are skipped as unchained legacy entries. Exits 0 when intact,
1 when broken (one line naming the entry id or line and what is wrong), 2 on bad usage.
"""


@audit_app.command("verify", help=AUDIT_VERIFY_HELP)
def audit_verify(
    config: Annotated[str | None, typer.Option("--config", metavar="FILE", help="Configuration file.")] = None,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", metavar="FILE", help="A JSON-lines audit file.")] = None,
    expect_head: Annotated[
        str | None, typer.Option("--expect-head", metavar="HASH", help="A head hash recorded earlier.")
    ] = None,
) -> None:
    from bot.core.audit_chain import Verdict, is_hash, verify, verify_async  # noqa: PLC0415

    if config is not None and jsonl is not None:
        raise UsageError("give --config or --jsonl, not both")
    if expect_head is not None and not is_hash(expect_head.lower()):
        raise UsageError(f"--expect-head: {expect_head!r} is not a 64-digit hex SHA-256")
    head = expect_head.lower() if expect_head is not None else None
    if jsonl is not None:
        from bot.adapters.audit import read_jsonl_chain  # noqa: PLC0415

        try:
            verdict = verify(read_jsonl_chain(jsonl), head)
        except OSError as exc:
            raise UsageError(f"cannot read {jsonl}: {exc.strerror or exc}") from None
        unit = "line"
    else:
        from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

        from bot.adapters.db import SqlStore  # noqa: PLC0415

        async def work(store: Store, _: Settings) -> Verdict:
            assert isinstance(store, SqlStore)
            return await verify_async(store.audit_chain(), head)

        try:
            verdict = _on_store(config, work)
        except SQLAlchemyError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"cannot read the audit table (run `incident-bot db upgrade`?): {first}") from None
        unit = "entry"
    sys.stdout.write(verdict.line(unit) + "\n")
    if not verdict.intact:
        raise typer.Exit(1)


def main() -> None:
    """Entry point: run the app and turn every usage problem into one line on stderr and exit 2.

    Typer vendors its own copy of click, so its exceptions are recognised by shape (an ``exit_code``
    and a ``format_message()``), not by importing a private module.
    """
    from bot.adapters.log_redaction import install_log_redaction  # noqa: PLC0415

    install_log_redaction()  # before anything logs: every record from here on is redacted
    try:
        # Without standalone mode click returns the code of a ``typer.Exit`` instead of exiting with it.
        code = app(standalone_mode=False)
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
    if isinstance(code, int) and code:
        sys.exit(code)
