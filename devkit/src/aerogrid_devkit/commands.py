"""The devkit's commands, added to `aerogrid`: broker, topics, produce, tail."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import NoReturn

import click
from aiokafka.errors import KafkaError

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.errors import SchemaRegistryError
from aerogrid.settings import BrokerSettings
from aerogrid_devkit import brokers, kafka_tools, scaffold
from aerogrid_devkit.brokers import compatibility
from aerogrid_devkit.registry_records.decode import RecordDecoder
from aerogrid_devkit.registry_records.encode import FORMATS
from aerogrid_devkit.registry_records.produce import RegistryPart, encode_records
from aerogrid_devkit.registry_records.settings import resolve_registry
from aerogrid_devkit.registry_records.shown import shown_record
from aerogrid_devkit.schema_registry import RegistryError
from aerogrid_devkit.schema_registry import cli as registry_cli
from aerogrid_devkit.workspace import MANIFEST, Workspace


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
def broker() -> None:
    """The local broker: up, down, status.

    Modes: embedded (no Docker, no Java; in memory), kafka (Apache Kafka from its jars on
    Java 17+, data in the workspace's .aerogrid/kafka-data), docker (Apache Kafka in a
    container, data in a named volume), external (a cluster from the workspace's
    aerogrid.toml, TLS and SASL included); auto uses a local broker that already runs, else
    docker when a Docker daemon answers, else kafka when Java 17+ is present, else embedded.
    """


_BROKER_MODE = click.option(
    "--mode",
    type=click.Choice(list(brokers.MODES)),
    help="Which broker [default: the workspace's [broker] mode, else auto].",
)
_BROKER_WORKSPACE = click.option(
    "--workspace",
    "workspace_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The workspace folder whose aerogrid.toml configures the broker [default: .].",
)


def _open_broker(
    mode: str | None, workspace_dir: Path | None, port: int | None = None
) -> tuple[brokers.LocalBroker, str]:
    """The broker a command acts on, and why that one (exits with a clear error)."""
    folder = workspace_dir if workspace_dir is not None else Path(".")
    ws: Workspace | None = None
    try:
        if workspace_dir is not None or (folder / MANIFEST).is_file():
            ws = Workspace.load(folder)
        if mode is not None:
            chosen, source = mode, "--mode"
        elif ws is not None:
            chosen, source = ws.broker_mode, str(ws.root / MANIFEST)
        else:
            chosen, source = "auto", "default"
        return brokers.open_broker(
            chosen,
            ws,
            port=port,
            source=source,
            on_progress=lambda line: click.echo(line, err=True),
        )
    except (ConfigurationError, brokers.BrokerError) as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from None


@broker.command()
@_BROKER_MODE
@_BROKER_WORKSPACE
@click.option(
    "--port",
    type=int,
    help="Port on 127.0.0.1 for embedded, kafka or docker [default: 9092; embedded and kafka: "
    "else a free one].",
)
@click.option(
    "--schema-registry",
    "with_registry",
    is_flag=True,
    help="Also start a local schema registry (Apicurio Registry, Java 17+) and point apps at it "
    '[default: when the workspace has [schema_registry] mode = "local"].',
)
def up(mode: str | None, workspace_dir: Path | None, port: int | None, with_registry: bool) -> None:
    """Start the local broker in the background (once; later calls find it)."""
    chosen, why = _open_broker(mode, workspace_dir, port)
    click.echo(why)
    try:
        found = chosen.up()
    except brokers.BrokerError as exc:
        _fail(str(exc))
        return
    click.echo(found.detail)
    if not found.running:
        sys.exit(1)
    root, registry = registry_cli.workspace_registry(workspace_dir)
    if registry_cli.wants_local(registry, with_registry):
        try:
            click.echo(registry_cli.registry_up(root, registry))
        except RegistryError as exc:
            _fail(str(exc))


@broker.command()
@_BROKER_MODE
@_BROKER_WORKSPACE
@click.option(
    "--purge",
    is_flag=True,
    help="Delete the broker's data too (kafka: .aerogrid/kafka-data; docker: the container and "
    "its volume).",
)
def down(mode: str | None, workspace_dir: Path | None, purge: bool) -> None:
    """Stop the local broker and wait until it has exited (embedded: its topics are gone;
    kafka and docker: they stay on disk unless --purge)."""
    chosen, why = _open_broker(mode, workspace_dir)
    click.echo(why)
    try:
        click.echo(chosen.down(purge=purge).detail)
    except brokers.BrokerError as exc:
        _fail(str(exc))
    stopped = registry_cli.registry_down(registry_cli.workspace_registry(workspace_dir)[0], purge)
    if stopped is not None:
        click.echo(stopped)


@broker.command()
@_BROKER_MODE
@_BROKER_WORKSPACE
@click.option("--json", "as_json", is_flag=True, help="One JSON object (mode, running, ...).")
def status(mode: str | None, workspace_dir: Path | None, as_json: bool) -> None:
    """Is the local broker up and answering, where, and which Kafka clients work with it."""
    chosen, why = _open_broker(mode, workspace_dir)
    found = chosen.status()
    clients = compatibility.clients_line(chosen.mode)
    registry = registry_cli.registry_status()
    if as_json:
        answer = {**found.to_json(), "why": why, "uri": chosen.uri, "clients": clients}
        click.echo(json.dumps({**answer, "schema_registry": registry}))
    else:
        click.echo(why)
        click.echo(found.detail)
        click.echo(clients)
        if registry is not None:
            click.echo(registry)


def _broker_settings(explicit: str | None) -> BrokerSettings:
    try:
        return kafka_tools.resolve_broker(explicit)
    except ConfigurationError as exc:
        _fail(str(exc))


_BROKER = click.option(
    "--broker",
    help="Bootstrap servers [default: AEROGRID_BROKER, else the workspace's, else the local one].",
)


@click.command()
@_BROKER
@click.option("--json", "as_json", is_flag=True)
def topics(broker: str | None, as_json: bool) -> None:
    """List topics with their partitions and record counts ("≤N": not all read, so at most N)."""
    settings = _broker_settings(broker)
    try:
        infos = asyncio.run(kafka_tools.list_topics(settings))
    except KafkaError as exc:
        _fail(f"cannot reach the broker at {settings.bootstrap}: {exc}")
        return
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "partitions": i.partitions,
                        "ends": i.ends,
                        "begins": i.begins,
                        "records": i.records,
                        "records_exact": i.records_exact,
                    }
                    for i in infos
                ]
            )
        )
        return
    for info in infos:
        # "≤": too many offsets to read and count; markers and gaps may take some.
        total = f"{info.records}" if info.records_exact else f"≤{info.records}"
        click.echo(f"{info.name:<40} {info.partitions:>3} partitions {total:>10} records")


_REGISTRY = click.option(
    "--schema-registry",
    "registry",
    help="Schema registry URL [default: AEROGRID_SCHEMA_REGISTRY, else the workspace's].",
)
_FORMAT = click.Choice(FORMATS)


@click.command()
@click.argument("topic")
@click.argument("value", required=False)
@click.option("--key", help="Record key (text; JSON with --key-format).")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="One record per non-empty line.",
)
@click.option("--header", "headers", multiple=True, help="NAME=VALUE, repeatable.")
@click.option("--format", "fmt", type=_FORMAT, default="json", show_default=True)
@click.option(
    "--schema",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The value schema: .avsc, JSON Schema .json or .proto (with --format).",
)
@click.option("--message", help="The .proto's message (--format protobuf).")
@click.option("--key-format", type=_FORMAT, default="json", show_default=True)
@click.option(
    "--key-schema",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The key schema (with --key-format).",
)
@_BROKER
@_REGISTRY
def produce(
    topic: str,
    value: str | None,
    key: str | None,
    file: Path | None,
    headers: tuple[str, ...],
    fmt: str,
    schema: Path | None,
    message: str | None,
    key_format: str,
    key_schema: Path | None,
    broker: str | None,
    registry: str | None,
) -> None:
    """Send VALUE (or each line of --file) to TOPIC.

    With --format avro, json-schema or protobuf, each VALUE is JSON checked against
    --schema, registered under the subject TOPIC-value, and sent in the Confluent wire format.
    """
    if (value is None) == (file is None):
        _fail("give a VALUE or --file, not both and not neither")
    if value is not None:
        values = [value.encode()]
    else:
        assert file is not None
        values = [line.encode() for line in file.read_text().splitlines() if line.strip()]
    parsed: list[tuple[str, bytes]] = []
    for header in headers:
        name, sep, text = header.partition("=")
        if not sep or not name:
            _fail(f"header {header!r} is not NAME=VALUE")
        parsed.append((name, text.encode()))
    try:
        value_part = RegistryPart.load(fmt, schema, message, is_key=False)
        key_part = RegistryPart.load(key_format, key_schema, None, is_key=True)
        registry_settings = resolve_registry(registry) if value_part or key_part else None
        values, raw_key = asyncio.run(
            encode_records(
                registry_settings,
                topic,
                (value_part, values),
                (key_part, key.encode() if key else None),
            )
        )
    except (ConfigurationError, ValueError, SchemaRegistryError) as exc:
        _fail(str(exc))
    settings = _broker_settings(broker)
    try:
        where = asyncio.run(
            kafka_tools.produce(settings, topic, values, key=raw_key, headers=parsed)
        )
    except KafkaError as exc:
        _fail(f"cannot produce to {topic} at {settings.bootstrap}: {exc}")
        return
    for partition, offset in where:
        click.echo(f"{topic}[{partition}]@{offset}")


@click.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the newest.")
@click.option("--max", "limit", type=int, help="Stop after this many records.")
@click.option("--idle-timeout", type=float, help="Stop after this many seconds without a record.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@_BROKER
@_REGISTRY
def tail(
    topic: str,
    from_beginning: bool,
    limit: int | None,
    idle_timeout: float | None,
    as_json: bool,
    broker: str | None,
    registry: str | None,
) -> None:
    """Print TOPIC's records as they arrive (key, value, headers).

    Avro, Protobuf and JSON Schema records (the Confluent wire format) are decoded with
    the schema registry and shown with their schema id and subject.
    """
    settings = _broker_settings(broker)
    try:
        decoder = RecordDecoder(resolve_registry(registry))
    except ConfigurationError as exc:
        _fail(str(exc))

    async def run() -> None:
        count = 0
        try:
            async for record in kafka_tools.tail(
                settings,
                topic,
                from_beginning=from_beginning,
                idle_timeout=idle_timeout,
                decoder=decoder,
            ):
                click.echo(json.dumps(record) if as_json else shown_record(record))
                count += 1
                if limit is not None and count >= limit:
                    return
        finally:
            await decoder.aclose()

    try:
        asyncio.run(run())
    except LookupError as exc:
        _fail(str(exc))
    except KafkaError as exc:
        _fail(f"cannot read {topic} at {settings.bootstrap}: {exc}")
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("name")
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workspace folder (made, with aerogrid.toml, when missing).",
)
def new(name: str, workspace: Path) -> None:
    """Scaffold an app: NAME/app.py, requirements.txt and a test, registered in aerogrid.toml."""
    try:
        folder = scaffold.new_app(workspace, name)
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    click.echo(f"created {folder}/ (app.py, requirements.txt, test_app.py)")
    click.echo(f"  run it:  aerogrid run {folder / 'app.py'}")
    click.echo(f"  test it: python -m pytest {folder}")
