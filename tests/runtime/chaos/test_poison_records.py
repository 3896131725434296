"""The poison corpus: every record that once stopped an app, among good orders, on both brokers.

Each poison record used to put `aerogrid run` in a crash loop (invalid UTF-8 inside a
JSON string, nesting ~1,000 deep in an unknown field, a 5 MB record that fails to decode,
a valid record whose row would exceed the changelog's message limit) or to spoof the
dead letter's error (a producer's own `aerogrid-error` header). Now the app keeps running
in the same process, the grid is exact for the good orders, each poison record is in
`<app>.dlq` with its reason (the big ones cut to fit, with their original size), the
counters say so, and `aerogrid tail` and the TUI's topic browser show every dead letter.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from textual.widgets import Static

from aerogrid.limits import MAX_MESSAGE_BYTES
from aerogrid.settings import BrokerSettings
from aerogrid_devkit.brokers import ExternalMode
from aerogrid_devkit.dev_loop import DevLoop
from aerogrid_devkit.tui.app import AeroGridApp
from aerogrid_devkit.tui.topics.browse_form import BrowseRequest
from aerogrid_devkit.tui.topics.browser import TopicBrowserScreen
from aerogrid_devkit.workspace import ExternalConfig
from support.apps import RunningApp, read_topic, write_orders_app
from support.brokers import Broker
from support.orders import converged, expected_sums, orders

pytestmark = pytest.mark.timeout(300)

#: The input topic takes records up to 8 MiB (the broker's default is 1 MB).
BIG_TOPIC = {"max.message.bytes": str(8 * 1024 * 1024)}
FIVE_MB = 5 * 1024 * 1024


@dataclass(frozen=True)
class Poison:
    key: bytes
    value: bytes
    stage: str
    reason: str  # a regular expression the dead letter's aerogrid-error must match
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def cut(self) -> bool:
        return len(self.value) > MAX_MESSAGE_BYTES


FORGED = (("aerogrid-error", b"forged: nothing wrong here"), ("AeroGrid-Stream", b"forged"))
CORPUS = [
    Poison(
        b"invalid-utf8",
        b'{"product": "\xff\xfe", "quantity": 1}',
        "decode",
        r"Order: a JSON string is not valid UTF-8",
    ),
    Poison(
        b"deep-unknown-field",
        b'{"product": "p1", "quantity": 1, "junk": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        "decode",
        r"Order: JSON nested deeper than 128 levels",
    ),
    Poison(
        b"five-mb-undecodable",
        b'{"product": "p1", "quantity": 1, "junk": "' + b"x" * FIVE_MB,  # never closed
        "decode",
        r"Order: Input data was truncated",
    ),
    Poison(
        b"five-mb-row",
        json.dumps({"product": "y" * FIVE_MB, "quantity": 1}).encode(),
        "handler",
        r"GridError: .*row \d+ bytes > limit \d+ bytes",
    ),
    Poison(
        b"forged-headers",
        b'{"product": "p1", "quantity": "three"}',
        "decode",
        r"Expected `int`, got `str` - at `\$\.quantity`",
        FORGED,
    ),
    # what hypothesis found besides: an integer of thousands of digits, a key not UTF-8
    Poison(
        b"huge-int",
        b'{"product": "p1", "quantity": 1' + b"0" * 5000 + b"}",
        "decode",
        r"Integer value out of range",
    ),
    Poison(b"\xff\xfe-key", b'{"product": "p1", "quantity": 1}', "decode", r"not valid UTF-8"),
    Poison(b"handler-raises", b'{"product": "p1", "quantity": -4}', "handler", r"negative"),
]


async def create_big_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1, topic_configs=BIG_TOPIC)])
    finally:
        await admin.close()


async def produce_all(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]]
) -> None:
    """Produce in order, 5 MB records included (the test producer's limit is raised)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        for key, value, headers in records:
            await (await producer.send(topic, key=key, value=value, headers=list(headers)))
    finally:
        await producer.stop()


def aerogrid_tail(bootstrap: str, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AEROGRID_BROKER"}
    return subprocess.run(
        [sys.executable, "-m", "aerogrid", "tail", topic, "--broker", bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


async def test_no_poison_record_stops_the_app(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    dlq = f"{unique_name}.dlq"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=2, config=BIG_TOPIC)
    await create_big_topic(broker.bootstrap, topic)
    good = orders(300, seed=41)
    forged_good = (b"forged-but-good", b'{"product": "p2", "quantity": 5}', FORGED)
    mixed: list[tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]] = [
        (k or b"", v or b"", ()) for k, v in good[:100]
    ]
    for i, poison in enumerate(CORPUS):
        mixed.append((poison.key, poison.value, poison.headers))
        mixed.extend((k or b"", v or b"", ()) for k, v in good[100 + 25 * i : 125 + 25 * i])
    mixed.append(forged_good)
    mixed.extend((k or b"", v or b"", ()) for k, v in good[100 + 25 * len(CORPUS) :])

    with RunningApp(path, broker.bootstrap) as app:
        assert app.proc is not None
        pid = app.proc.pid
        await produce_all(broker.bootstrap, topic, mixed)
        want = expected_sums([*good, forged_good[:2]])
        got = await converged(app.target, unique_name, "product_sum", want, timeout=60)
        assert got == want, app.log_tail()

        letters = await read_topic(broker.bootstrap, dlq, len(CORPUS), timeout=30)
        assert sorted(m.key for m in letters) == sorted(p.key for p in CORPUS), app.log_tail()
        for poison in CORPUS:
            (letter,) = [m for m in letters if m.key == poison.key]
            names = [name for name, _ in letter.headers]
            headers = dict(letter.headers)
            assert headers["aerogrid-error-stage"] == poison.stage.encode(), poison.key
            assert re.search(poison.reason, headers["aerogrid-error"].decode()), headers
            assert headers["aerogrid-source-topic"] == topic.encode()
            assert names.count("aerogrid-error") == 1  # only the engine's
            if poison.cut:
                assert headers["aerogrid-truncated"] == b"value"
                assert headers["aerogrid-original-size"] == str(len(poison.value)).encode()
                assert len(letter.value) < MAX_MESSAGE_BYTES
                assert poison.value.startswith(letter.value)
            else:
                assert "aerogrid-truncated" not in headers
                assert letter.value == poison.value  # the original bytes
        forged = dict(next(m for m in letters if m.key == b"forged-headers").headers)
        assert forged["original-aerogrid-error"] == b"forged: nothing wrong here"
        assert forged["original-AeroGrid-Stream"] == b"forged"
        assert forged["aerogrid-stream"] == b"sum_orders"
        assert "AeroGrid-Stream" not in forged

        # the same process all along, and the counters say what happened
        assert app.proc.poll() is None and app.proc.pid == pid
        handler_failures = sum(p.stage == "handler" for p in CORPUS)
        labels = {"app": unique_name}
        assert app.metric("aerogrid_dead_lettered_total", labels) == len(CORPUS)
        assert app.metric("aerogrid_decode_errors_total", labels) == len(CORPUS) - handler_failures
        assert app.metric("aerogrid_handler_errors_total", labels) == handler_failures
        assert app.metric("aerogrid_records_in_total", labels) == len(mixed)
        log = app.log_file.read_text(errors="replace")
        assert re.search(rf"dead-lettered record {re.escape(topic)}\[\d\]@\d+: decode failed", log)
        assert "Traceback" not in log

    # `aerogrid tail` shows every dead letter, as JSON and as text
    every = ("--from-beginning", "--max", str(len(CORPUS)), "--idle-timeout", "10")
    tailed = aerogrid_tail(broker.bootstrap, dlq, *every, "--json")
    assert tailed.returncode == 0, tailed.stderr[-2000:]
    shown = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert len(shown) == len(CORPUS)
    deep = next(r for r in shown if r["key"] == "deep-unknown-field")
    assert deep["value"].startswith('{"product": "p1", "quantity": 1, "junk": [[[')  # as text
    text = aerogrid_tail(broker.bootstrap, dlq, *every)
    assert text.returncode == 0, text.stderr[-2000:]
    assert text.stdout.count(f"{dlq}[0]@") == len(CORPUS)

    # the TUI's topic browser opens the dead-letter topic and shows each of them
    await browse_in_the_tui(broker.bootstrap, dlq, len(CORPUS))


def plain(widget: Static) -> str:
    """What a widget shows on a wide terminal, without styles."""
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


async def browse_in_the_tui(bootstrap: str, topic: str, expected: int) -> None:
    loop = DevLoop({}, bootstrap, endpoint_port=0)  # not started: the TUI only looks
    broker = ExternalMode(ExternalConfig(BrokerSettings.parse(bootstrap)))
    tui = AeroGridApp(loop, broker=broker)
    async with tui.run_test(size=(150, 45)) as pilot:
        browser = TopicBrowserScreen(topic, BrowseRequest("beginning", None, 100))
        await tui.push_screen(browser)
        for _ in range(200):
            if len(browser.records) == expected:
                break
            await pilot.pause(0.1)
        assert len(browser.records) == expected
        details: list[str] = []
        for _ in range(expected):
            await pilot.pause()
            details.append(plain(browser.query_one(".record", Static)))
            await pilot.press("down")
        assert tui.screen is browser  # still open, nothing crashed
    text = "\n".join(details)
    assert "more bytes" in text  # the cut values, shown cut
    assert "aerogrid-original-size" in text and "original-aerogrid-error" in text
