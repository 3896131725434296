"""Snapshots of every screen of the TUI (pytest-textual-snapshot), on fixed fake data.

The loop, supervisor and broker here are fakes, and Kafka calls are replaced with fixed
answers, so the pictures are the same on every run: no ports, timestamps or counters
that move. What the screens do against real apps and brokers is in test_tui_pilot.py.
Regenerate with `pytest tests/devkit/tui/test_tui_snapshots.py --snapshot-update` and
look at the report before committing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import kafka_tools
from aerogrid_devkit.kafka_tools import BrowsedRecord, BrowseStart, TopicInfo
from aerogrid_devkit.supervisor import AppProcess, AppStats
from aerogrid_devkit.tui.app import AeroGridApp
from aerogrid_devkit.tui.grid.picker import GridPicker
from aerogrid_devkit.tui.session import BrokerLike, LoopLike
from support.tui_fakes import FakeBroker, FakeLoop

SnapCompare = Callable[..., bool]
SIZE = (110, 32)


def app_process(
    name: str,
    status: str,
    *,
    stats: AppStats | None = None,
    restarts: int = 0,
    exit_code: int | None = None,
    logs: Sequence[str] = (),
) -> AppProcess:
    process = AppProcess(name, Path(f"/work/apps/{name}/app.py"))
    (replica,) = process.replicas
    replica.status = status
    replica.stats = stats or AppStats()
    replica.restarts = restarts
    replica.exit_code = exit_code
    process.logs.extend(logs)
    return process


def fake_apps() -> list[AppProcess]:
    return [
        app_process(
            "ordersapp",
            "running",
            stats=AppStats(records_in=12840, records_per_s=312.5, errors=3, dead_lettered=3),
            logs=[
                "INFO aerogrid.runner: ordersapp restored product_sum (9 rows)",
                "INFO aerogrid.runner: serving ordersapp on gRPC and HTTP",
                "WARNING aerogrid.engine: orders[0]@97 dead-lettered: DecodeError $.quantity",
            ],
        ),
        app_process(
            "pricing",
            "crashed",
            restarts=3,
            exit_code=2,
            logs=[
                "error: cannot load app: /work/apps/pricing/app.py:7: NameError: name 'Grid' "
                "is not defined",
                "    prices = Grid('prices')",
                "[aerogrid dev] pricing exited with 2; restarting in 4.0s",
            ],
        ),
        app_process("inventory", "starting"),
        app_process("alerts", "stopped", logs=["[aerogrid dev] alerts stopped"]),
        app_process(
            "fx-rates",
            "reloading",
            stats=AppStats(records_in=420, records_per_s=0.0),
        ),
    ]


def _counted(name: str, ends: dict[int, int]) -> TopicInfo:
    """A topic whose records were all counted (as many as its offsets)."""
    return TopicInfo(name, len(ends), ends, dict.fromkeys(ends, 0), dict(ends))


TOPICS = [
    _counted("orders", {0: 4210, 1: 4302, 2: 4328}),
    _counted("ordersapp.dlq", {0: 3}),
    _counted("ordersapp.product_sum.changelog", {0: 12840}),
    _counted("prices", {0: 0}),
]

RECORDS = [
    BrowsedRecord(
        "orders",
        0,
        41,
        1_700_000_000_000,
        b"order-000041",
        json.dumps({"product": "flat white", "quantity": 2, "note": None}).encode(),
        (("source", b"till-3"), ("trace-id", b"7f3a")),
    ),
    BrowsedRecord(
        "orders",
        1,
        40,
        1_700_000_001_000,
        b"order-000042",
        b'{"product": "tea", "quantity": "lots"}',
        (),
    ),
    BrowsedRecord("orders", 2, 39, 1_700_000_002_000, None, b"not json at all", ()),
]


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka answers with the fixed topics and records above (nothing is sent anywhere)."""

    async def list_topics(settings: BrokerSettings) -> list[TopicInfo]:
        return list(TOPICS)

    async def browse(
        settings: BrokerSettings,
        topic: str,
        *,
        start: BrowseStart = "beginning",
        partition: int | None = None,
        limit: int = 100,
        **_: Any,
    ) -> list[BrowsedRecord]:
        return [r for r in RECORDS if r.topic == topic][:limit]

    monkeypatch.setattr(kafka_tools, "list_topics", list_topics)
    monkeypatch.setattr(kafka_tools, "browse", browse)


def make_app(*, broker: BrokerLike | None = None) -> AeroGridApp:
    loop: LoopLike = FakeLoop(fake_apps())
    return AeroGridApp(loop, broker=broker or FakeBroker())


async def settle(pilot: Pilot[None]) -> None:
    """Let workers (broker check, topic listing) finish and the screen redraw."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_apps_screen(snap_compare: SnapCompare) -> None:
    """Every status coloured; the crashed app shows its exit code and last error line."""
    assert snap_compare(make_app(), press=["down"], terminal_size=SIZE, run_before=settle)


def test_apps_screen_filtered(snap_compare: SnapCompare) -> None:
    assert snap_compare(
        make_app(), press=["slash", *"order"], terminal_size=SIZE, run_before=settle
    )


def test_logs_screen(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("2")
        await pilot.press("slash", *"dead", "enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_topics_screen(snap_compare: SnapCompare, fake_kafka: None) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_browse_form(snap_compare: SnapCompare, fake_kafka: None) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_topic_browser(snap_compare: SnapCompare, fake_kafka: None) -> None:
    """The JSON value pretty-printed, with its headers, partition and offset."""

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("enter", "enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(110, 40), run_before=run_before)


def test_producer_form_with_an_error(snap_compare: SnapCompare, fake_kafka: None) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("n", *"o1", "tab", *'{"product": "tea"', "tab")
        await pilot.press(*"source=till-3", "ctrl+s")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(110, 40), run_before=run_before)


def test_broker_screen(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("4")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_broker_down_asks_first(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare: SnapCompare) -> None:
    assert snap_compare(
        make_app(), press=["question_mark"], terminal_size=(110, 60), run_before=settle
    )


def test_command_palette(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"restart")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_grid_picker(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        grids = [("ordersapp", "product_sum"), ("ordersapp", "customers")]
        pilot.app.push_screen(GridPicker("ordersapp", grids))
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)
