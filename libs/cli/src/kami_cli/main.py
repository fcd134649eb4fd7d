"""The `kami` command: everything an operator (or a seller) does from a shell."""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from kami_cli import demo
from kami_cli import keys as key_files
from kami_cli import ledger as books
from kami_cli.config import EVENT_SERVICES, SERVICES, CliSettings, save_login
from kami_cli.errors import CliError
from kami_cli.http import Api, log_in
from kami_events import dead_letters

P = ParamSpec("P")
R = TypeVar("R")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

HELP = """\
Kami's operator CLI: run services, provision Kafka topics, import keys,
inspect orders and stuck sagas, redrive dead letters, rebuild read models,
audit the ledger; on the local platform, read the SMS outbox and buy as the
demo buyer.

Configuration comes from the environment, like the services:
KAMI_KAFKA_BOOTSTRAP, KAMI_MONGODB_URI, KAMI_DATABASE_PREFIX (databases are
<prefix>_<service>), KAMI_TOPIC_PREFIX, KAMI_<SERVICE>_URL (e.g.
KAMI_ORDERING_URL, default http://127.0.0.1:8104) and KAMI_TOKEN. The options
below override them. API commands use KAMI_TOKEN, else the login saved by
`kami login` (mode 0600 under KAMI_CONFIG_DIR, default ~/.config/kami).
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local Kafka + FerretDB (deploy/local/stack).")
topics_app = typer.Typer(help="Kafka topics of the event catalogue.")
keys_app = typer.Typer(help="Card keys in sellers' pools (inventory).")
orders_app = typer.Typer(help="Orders (ordering).")
sagas_app = typer.Typer(help="Purchase sagas (ordering).")
dlq_app = typer.Typer(help="Dead-letter topics: what consumers gave up on.")
projections_app = typer.Typer(help="Read models rebuilt from event stores.")
ledger_app = typer.Typer(help="Payment's double-entry ledger.")
demo_app = typer.Typer(help="The local platform's demo: a purchase as the demo buyer.")
sms_app = typer.Typer(help="The local platform's SMS outbox (the simulated carrier).")
for name, sub in (
    ("stack", stack_app),
    ("topics", topics_app),
    ("keys", keys_app),
    ("orders", orders_app),
    ("sagas", sagas_app),
    ("dlq", dlq_app),
    ("projections", projections_app),
    ("ledger", ledger_app),
    ("sms", sms_app),
    ("demo", demo_app),
):
    app.add_typer(sub, name=name, no_args_is_help=True)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """A `CliError` becomes a message on stderr and the command's exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (CliError, dead_letters.DeadLetterError) as exc:
            err.print(f"kami: {exc.message}", markup=False, highlight=False)
            raise typer.Exit(getattr(exc, "exit_code", 1)) from None

    return run


def settings_of(ctx: typer.Context) -> CliSettings:
    settings: CliSettings = ctx.ensure_object(dict)["settings"]
    return settings


@app.callback()
def configure(
    ctx: typer.Context,
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers [KAMI_KAFKA_BOOTSTRAP]")
    ] = None,
    mongodb_uri: Annotated[str | None, typer.Option(help="MongoDB URI [KAMI_MONGODB_URI]")] = None,
    database_prefix: Annotated[
        str | None, typer.Option(help="databases are <prefix>_<service> [KAMI_DATABASE_PREFIX]")
    ] = None,
    topic_prefix: Annotated[
        str | None, typer.Option(help="the topic namespace [KAMI_TOPIC_PREFIX]")
    ] = None,
    url: Annotated[
        list[str] | None,
        typer.Option(help="a service's API, SERVICE=URL (repeatable) [KAMI_<SERVICE>_URL]"),
    ] = None,
    token: Annotated[str | None, typer.Option(help="an access token [KAMI_TOKEN]")] = None,
) -> None:
    overrides: dict[str, Any] = {}
    if kafka_bootstrap:
        overrides["kafka_bootstrap"] = kafka_bootstrap
    if mongodb_uri:
        overrides["mongodb_uri"] = mongodb_uri
    if database_prefix:
        overrides["database_prefix"] = database_prefix
    if token:
        overrides["token"] = token
    for pair in url or []:
        service, _, address = pair.partition("=")
        if service not in SERVICES or not address:
            raise typer.BadParameter(f"--url wants SERVICE=URL with a service of {SERVICES}")
        overrides[f"{service}_url"] = address
    if topic_prefix:
        os.environ["KAMI_TOPIC_PREFIX"] = topic_prefix  # read by kami_events.topics
    ctx.ensure_object(dict)["settings"] = CliSettings(**overrides)


# -- serve ---------------------------------------------------------------------------


@app.command()
@reports_errors
def serve(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help=f"one of {', '.join(SERVICES)}, or all")],
    host: Annotated[str, typer.Option(help="`all` only: the address every server binds")] = (
        "127.0.0.1"
    ),
    base_port: Annotated[
        int, typer.Option(min=1, max=65_000, help="`all` only: identity's port; the others follow")
    ] = 8101,
) -> None:
    """Run a service: its HTTP API, consumer, outbox relay and pollers.

    One service is configured by the environment exactly as `python -m
    kami_<service>` is (KAMI_HTTP_PORT...); the container image runs this.
    `all` runs every service in one process on ports 8101-8107 (a laptop, a
    demo; --base-port moves them), databases <prefix>_<service>.
    """
    from kami_cli import serve as serving

    if service == "all":
        serving.serve_all(
            host=host, base_port=base_port, database_prefix=settings_of(ctx).database_prefix
        )
    else:
        serving.serve_one(service)


# -- login ---------------------------------------------------------------------------


@app.command()
@reports_errors
def login(
    ctx: typer.Context,
    phone: Annotated[str, typer.Option(prompt=True, help="the account's phone number")],
    password: Annotated[
        str | None, typer.Option(help="else asked for, or KAMI_PASSWORD", envvar="KAMI_PASSWORD")
    ] = None,
) -> None:
    """Log in at identity and keep the tokens for the other commands (0600)."""
    settings = settings_of(ctx)
    saved = log_in(settings, phone, password or getpass.getpass("Password: "))
    save_login(settings.credentials_path, saved)
    out.print(f"logged in as {saved.user_id} ({phone}); saved to {settings.credentials_path}")


@app.command()
def logout(ctx: typer.Context) -> None:
    """Forget the saved login."""
    path = settings_of(ctx).credentials_path
    if path.exists():
        path.unlink()
        out.print(f"removed {path}")


# -- stack ---------------------------------------------------------------------------

ScriptOption = Annotated[
    Path | None, typer.Option("--script", help="the stack script [KAMI_STACK_SCRIPT]")
]


def _stack(script: Path | None, *args: str) -> None:
    from kami_cli.stack import find_stack_script, run_stack

    code = run_stack(find_stack_script(script), *args)
    if code:
        raise typer.Exit(code)


@stack_app.command("up")
@reports_errors
def stack_up(script: ScriptOption = None) -> None:
    """Fetch/build if needed, start Kafka and FerretDB, wait until both answer."""
    _stack(script, "up")


@stack_app.command("down")
@reports_errors
def stack_down(
    script: ScriptOption = None,
    purge: Annotated[bool, typer.Option(help="also delete the data")] = False,
) -> None:
    """Stop both servers."""
    _stack(script, "down", *(["--purge"] if purge else []))


@stack_app.command("status")
@reports_errors
def stack_status(script: ScriptOption = None) -> None:
    """Exit 0 when both servers run."""
    _stack(script, "status")


# -- topics --------------------------------------------------------------------------


@topics_app.command("create")
@reports_errors
def topics_create(
    ctx: typer.Context,
    partitions: Annotated[int, typer.Option(min=1, help="partitions of each new topic")] = 3,
    replication_factor: Annotated[int, typer.Option(min=1, help="replicas of each")] = 1,
) -> None:
    """Create every event topic and every service's dead-letter topic (existing ones stay)."""
    from kami_cli.topics import catalogue_topics, create_topics

    settings = settings_of(ctx)
    outcomes = asyncio.run(
        create_topics(
            settings.kafka_bootstrap,
            catalogue_topics(),
            partitions=partitions,
            replication_factor=replication_factor,
        )
    )
    for outcome in outcomes:
        what = "created" if outcome.created else "exists "
        out.print(f"{what} {outcome.topic} ({outcome.partitions} partitions)", highlight=False)
    created = sum(o.created for o in outcomes)
    out.print(f"{created} created, {len(outcomes) - created} existed already")


# -- keys ----------------------------------------------------------------------------


@keys_app.command("import")
@reports_errors
def keys_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV (key,expires_at) or TXT (one key a line)")],
    offer: Annotated[str, typer.Option("--offer", help="the offer id whose pool gets the keys")],
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or txt (default: from the file name)")
    ] = None,
    encoding: Annotated[str, typer.Option(help="the file's text encoding, e.g. gbk")] = "utf-8",
    expires_at: Annotated[
        datetime | None,
        typer.Option(
            help="expiry of keys without one (with a time zone)", formats=["%Y-%m-%dT%H:%M:%S%z"]
        ),
    ] = None,
    chunk_lines: Annotated[int, typer.Option(min=1, max=10_000, help="lines per import")] = (
        key_files.DEFAULT_CHUNK_LINES
    ),
    import_id: Annotated[
        str | None, typer.Option(help="prefix of the chunks' import ids (default: from the file)")
    ] = None,
) -> None:
    """Upload a seller's key file to an offer's pool, in idempotent chunks.

    Run it again after a failure: chunks already imported are not imported twice.
    Exits 1 when inventory refuses a chunk; rejected lines do not fail it.
    """
    chosen_format = key_files.file_format(file, file_format)
    if chosen_format not in ("csv", "txt"):
        raise CliError("--format must be csv or txt", 2)
    lines = key_files.read_lines(file, encoding)
    planned = list(key_files.chunks(lines, chunk_lines))
    prefix = key_files.import_id_prefix(offer, lines, chunk_lines, import_id)
    with (
        Api(settings_of(ctx), "inventory") as api,
        Progress(
            TextColumn("importing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("lines"),
            console=err,
        ) as progress,
    ):
        task = progress.add_task(file.name, total=len(lines))
        summary = key_files.import_chunks(
            api,
            offer,
            planned,
            file_format=chosen_format,
            id_prefix=prefix,
            expires_at=expires_at,
            on_chunk=lambda chunk: progress.advance(task, len(chunk.lines)),
        )
    repeated = (
        f" ({summary.repeated_chunks} already imported before)" if summary.repeated_chunks else ""
    )
    out.print(
        f"{summary.imported} imported, {summary.duplicates} duplicates, "
        f"{summary.rejected} rejected, in {summary.chunks} chunks{repeated}",
        highlight=False,
    )
    if summary.rejected_lines:
        table = Table("line", "reason", "why", title="rejected lines")
        for rejected in sorted(summary.rejected_lines, key=lambda r: r.line):
            table.add_row(str(rejected.line), rejected.reason, rejected.message)
        out.print(table)


# -- orders and sagas ----------------------------------------------------------------


@orders_app.command("show")
@reports_errors
def orders_show(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="the order id")],
    as_json: Annotated[bool, typer.Option("--json", help="the raw timeline")] = False,
) -> None:
    """An order's state and its saga timeline: every service's events about it."""
    with Api(settings_of(ctx), "ordering") as api:
        order = api.get_json(f"/orders/{order_id}")
        timeline = api.get_json(f"/orders/{order_id}/timeline")
    if as_json:
        out.print_json(json.dumps({"order": order, "timeline": timeline["events"]}))
        return
    out.print(
        f"order {order['order_id']}: {order['state']}, {order['quantity']} x "
        f"{order['unit_price']} = {order['total']} fen, buyer {order['buyer_id']}, "
        f"seller {order['seller_id']}",
        highlight=False,
    )
    table = Table("occurred at", "event", "by", "what")
    for event in timeline["events"]:
        table.add_row(
            event["occurred_at"], event["event_type"], event["producer"], event["summary"]
        )
    out.print(table)


@sagas_app.command("stuck")
@reports_errors
def sagas_stuck(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="the raw list")] = False,
    check: Annotated[bool, typer.Option(help="exit 3 when any saga is stuck")] = False,
) -> None:
    """Sagas past their deadline that nothing acted on (ordering's poller is late or failing)."""
    with Api(settings_of(ctx), "ordering") as api:
        found = api.get_json("/sagas/past-deadline")
    if as_json:
        out.print_json(json.dumps(found))
    elif not found["sagas"]:
        out.print(
            f"no saga is past its deadline by more than {found['overdue_after_seconds']:.0f}s"
        )
    else:
        table = Table("order", "state", "deadline", "was due", "overdue")
        for saga in found["sagas"]:
            table.add_row(
                saga["order_id"],
                saga["state"],
                saga["deadline"],
                saga["due_at"],
                f"{saga['overdue_seconds']:.0f}s",
            )
        out.print(table)
    if check and found["sagas"]:
        raise typer.Exit(3)


# -- dead letters --------------------------------------------------------------------


@dlq_app.command("list")
@reports_errors
def dlq_list(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option(help="one service (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What each service's consumer dead-lettered: type, error, source, time, redriven."""
    settings = settings_of(ctx)
    services = [_known(service)] if service else list(EVENT_SERVICES)
    letters, sent = asyncio.run(_dead_letters(settings, services))
    if as_json:
        described = [dead_letters.describe(dl, sent.get(dl.record_id)) for dl in letters]
        out.print_json(json.dumps(described))
        return
    if not letters:
        out.print("no dead letters")
        return
    table = Table("service", "id", "event", "error", "source", "failed at", "redriven")
    for letter in letters:
        redriven = sent.get(letter.record_id)
        table.add_row(
            letter.service,
            letter.id,
            letter.event_type,
            letter.error[:120],
            letter.source,
            letter.failed_at,
            redriven.isoformat() if redriven else "",
        )
    out.print(table)


async def _dead_letters(
    settings: CliSettings, services: list[str]
) -> tuple[list[dead_letters.DeadLetter], dict[str, datetime]]:
    letters = []
    for service in services:
        letters.extend(await dead_letters.read_dead_letters(settings.kafka_bootstrap, service))
    client, log = _redrive_log(settings)
    try:
        return letters, await log.sent(letters)
    finally:
        await client.close()


def _redrive_log(settings: CliSettings) -> tuple[Any, dead_letters.RedriveLog]:
    from kami_events.mongo import connect

    client = connect(settings.mongodb_uri, app_name="kami-cli")
    collection = client[settings.database("operations")][dead_letters.REDRIVES_COLLECTION]
    return client, dead_letters.RedriveLog(collection)


@dlq_app.command("redrive")
@reports_errors
def dlq_redrive(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="whose dead-letter topic")],
    offset: Annotated[
        list[str] | None,
        typer.Option(help="a dead letter's id, PARTITION:OFFSET or OFFSET (repeatable)"),
    ] = None,
    redrive_all: Annotated[
        bool, typer.Option("--all", help="every dead letter not redriven yet")
    ] = False,
) -> None:
    """Publish dead letters again to their source topic (consumers dedupe by event_id).

    Each is recorded, so redriving it a second time sends nothing.
    """
    if bool(offset) == redrive_all:
        raise CliError("say which: --offset ID (repeatable) or --all", 2)
    settings = settings_of(ctx)
    outcomes = asyncio.run(_redrive(settings, _known(service), offset or [], redrive_all))
    sent = sum(o.sent for o in outcomes)
    for outcome in outcomes:
        letter = outcome.letter
        out.print(
            f"{letter.id} {letter.event_type} -> {letter.source_topic}: {outcome.why}",
            highlight=False,
        )
    out.print(f"{sent} redriven, {len(outcomes) - sent} skipped")


async def _redrive(
    settings: CliSettings, service: str, wanted: list[str], everything: bool
) -> list[dead_letters.RedriveOutcome]:
    letters = await dead_letters.read_dead_letters(settings.kafka_bootstrap, service)
    chosen = letters if everything else dead_letters.select(letters, wanted)
    client, log = _redrive_log(settings)
    inboxes = dead_letters.Inboxes(lambda consumer: client[settings.database(consumer)]["inbox"])
    try:
        return await dead_letters.redrive(settings.kafka_bootstrap, chosen, log, inboxes)
    finally:
        await client.close()


# -- projections ---------------------------------------------------------------------


@projections_app.command("rebuild")
@reports_errors
def projections_rebuild(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="the service whose read models to rebuild")],
    database: Annotated[
        str | None, typer.Option(help="the service's database (default <prefix>_<service>)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="rebuild even though the service answers at its URL")
    ] = False,
) -> None:
    """Rebuild a service's read models from its event stores. Stop the service first."""
    from kami_cli.projections import rebuild

    settings = settings_of(ctx)
    counts = asyncio.run(rebuild(settings, _known(service), database=database, force=force))
    out.print(
        f"{service}: rebuilt " + ", ".join(f"{name} ({n} documents)" for name, n in counts.items()),
        highlight=False,
    )


# -- ledger --------------------------------------------------------------------------


@ledger_app.command("check")
@reports_errors
def ledger_check(
    ctx: typer.Context,
    settle_seconds: Annotated[
        float, typer.Option(help="how long to let in-flight movements finish")
    ] = 15.0,
) -> None:
    """Zero-sum trial balance, and each order's money with the seller or the buyer.

    Exits 1 on any discrepancy, listing them.
    """
    settings = settings_of(ctx)
    with Api(settings, "payment") as api:
        deadline = time.monotonic() + settle_seconds
        trial = api.get_json("/ledger/trial-balance")
        while trial.get("total") != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            trial = api.get_json("/ledger/trial-balance")
    audit = asyncio.run(_audit_orders(settings))
    problems = books.check_trial_balance(trial) + audit.problems
    out.print(f"trial balance: total {trial['total']}, totals {trial['totals']}", highlight=False)
    out.print(
        f"orders with money: {audit.orders_with_money} ({audit.settled_orders} with the seller, "
        f"{audit.returned_orders} back with the buyer, {len(audit.in_flight)} in flight)"
    )
    if problems:
        for problem in problems:
            err.print(f"discrepancy: {problem}", markup=False, highlight=False)
        raise CliError(f"{len(problems)} discrepancies")
    out.print("ledger ok")


async def _audit_orders(settings: CliSettings) -> books.LedgerAudit:
    from kami_events.mongo import connect

    client = connect(settings.mongodb_uri, app_name="kami-cli")
    try:
        payment = await books.read_envelopes(client[settings.database("payment")])
        ordering = await books.read_envelopes(client[settings.database("ordering")])
    finally:
        await client.close()
    return books.audit_orders(books.money_by_order(payment), books.final_states(ordering))


# -- sms -----------------------------------------------------------------------------


@sms_app.command("last")
@reports_errors
def sms_last(
    ctx: typer.Context,
    phone: Annotated[str, typer.Argument(help="the phone number, e.g. 13900000002")],
    code_only: Annotated[bool, typer.Option("--code", help="print only the code it carries")] = (
        False
    ),
    database: Annotated[
        str | None, typer.Option(help="the outbox's database (default <prefix>_identity_sms_sink)")
    ] = None,
) -> None:
    """The last text identity sent to PHONE (its verification code), from the local outbox.

    Exits 1 when no text was sent to it, or when identity keeps no outbox
    there (a real SMS provider, or another database prefix).
    """
    from kami_cli.sms import last_text

    text = asyncio.run(last_text(settings_of(ctx), phone, database))
    if code_only:
        if text.code is None:
            raise CliError(f"the last text to {text.phone} carries no code: {text.text}")
        out.print(text.code, markup=False, highlight=False)
        return
    out.print(
        f"{text.sent_at.isoformat(timespec='seconds')}  to {text.phone}  code {text.code or '-'}",
        highlight=False,
    )
    out.print(text.text, markup=False, highlight=False)


# -- demo ----------------------------------------------------------------------------


@demo_app.command("buy")
@reports_errors
def demo_buy(
    ctx: typer.Context,
    phone: Annotated[str, typer.Option(help="the buyer's phone")] = demo.DEMO_BUYER_PHONE,
    password: Annotated[str, typer.Option(help="the buyer's password")] = demo.DEMO_PASSWORD,
    payment_password: Annotated[str, typer.Option(help="the wallet's payment password")] = (
        demo.DEMO_PAYMENT_PASSWORD
    ),
    offer: Annotated[
        str | None, typer.Option(help="the offer id (default: the best value in stock)")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait for each step")] = 60.0,
) -> None:
    """Buy one key as the demo buyer, through the public APIs, and reveal it.

    Prints each step with the seconds since the start: logged in, offer,
    placed, reserved, paid, delivered, revealed, then the key. The seed of
    ./scripts/run creates the demo buyer (phone 13900000009, password
    E2e-correct-horse-42, payment password 135790, 1000 yuan in the wallet).
    """
    bought = demo.buy(
        settings_of(ctx),
        phone=phone,
        password=password,
        payment_password=payment_password,
        offer_id=offer,
        timeout=timeout,
        on_step=lambda step: out.print(
            f"{step.seconds:6.2f}s  {step.name:<10} {step.detail}", markup=False, highlight=False
        ),
    )
    out.print(f"key: {bought.secret}", markup=False, highlight=False)
    out.print(f"the saga: kami orders show {bought.order_id}  (after `kami login --phone {phone}`)")


# -- helpers -------------------------------------------------------------------------


def _known(service: str) -> str:
    if service not in SERVICES:
        raise CliError(f"unknown service {service!r}; choose one of: {', '.join(SERVICES)}", 2)
    return service


def main() -> None:
    app(prog_name="kami")


if __name__ == "__main__":
    main()
