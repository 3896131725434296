"""The TUI driven by Textual's pilot against real things: a `DevLoop` running real app
processes on the embedded broker, real topics, a real closed port for the broken broker.

* apps: an app goes running and its counters move as orders arrive; a broken app file
  shows crashed with its exit code and error line (and in its logs) while the TUI stays
  usable; stop, start, restart by key; grids open from a key and from the palette; `q`
  leaves nothing hooked into the loop;
* logs: follow, pause, search, one app's lines, bounded under thousands of lines;
* topics: the topic with its offsets, browsing shows the produced message pretty-printed
  with its headers; the producer form sends a message (read back from the broker) and
  rejects a bad header line or invalid JSON with an error, sending nothing;
* a broker on a closed port: the broker section says unreachable and why, the topics
  section and the producer form say they cannot reach it, and the keys keep working.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from unittest.mock import patch

import pytest
from rich.console import Console, RenderableType
from textual.widgets import Log, Static, TextArea

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import kafka_tools
from aerogrid_devkit.brokers import EmbeddedMode, ExternalMode
from aerogrid_devkit.dev_loop import DevLoop
from aerogrid_devkit.tui.app import AeroGridApp
from aerogrid_devkit.tui.apps.screen import AppsScreen
from aerogrid_devkit.tui.broker.screen import BrokerScreen
from aerogrid_devkit.tui.grid.screen import GridScreen
from aerogrid_devkit.tui.logs.screen import MAX_LINES, LogsScreen
from aerogrid_devkit.tui.topics.browse_form import BrowseForm
from aerogrid_devkit.tui.topics.browser import TopicBrowserScreen
from aerogrid_devkit.tui.topics.producer import ProducerForm
from aerogrid_devkit.tui.topics.screen import TopicsScreen
from aerogrid_devkit.tui.widgets.filter_table import FilterableTable
from aerogrid_devkit.workspace import ExternalConfig
from support.apps import produce, write_orders_app
from support.brokers import Broker, free_port

SIZE = (150, 45)


async def until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout}s: {what or condition}"
        await asyncio.sleep(0.05)


def plain(renderable: RenderableType | object) -> str:
    """What a widget's content reads as on a wide terminal, without styles."""
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def static_text(widget: Static) -> str:
    return plain(widget.content)


def table_of(tui: AeroGridApp) -> FilterableTable:
    return tui.screen.query_one(FilterableTable)


def cell(tui: AeroGridApp, row: str, column: str) -> str:
    table = table_of(tui).table
    try:
        value = table.get_cell(row, column)
    except Exception:  # the row is not shown (yet)
        return ""
    return value if isinstance(value, str) else value.plain


def number(tui: AeroGridApp, row: str, column: str) -> float:
    text = cell(tui, row, column).replace(",", "").strip()
    return float(text) if text else -1.0


def select(tui: AeroGridApp, row: str) -> None:
    table = table_of(tui).table
    table.move_cursor(row=table.get_row_index(row), animate=False)


def write_broken_app(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "app.py"
    path.write_text("import aerogrid\nraise RuntimeError('not yet')\n")
    return path


@pytest.fixture
async def orders_loop(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> AsyncIterator[tuple[DevLoop, str]]:
    """A started DevLoop running the orders app ("good") on the embedded broker."""
    topic = f"{unique_name}-orders"
    (tmp_path / "good").mkdir()
    good = write_orders_app(tmp_path / "good", f"{unique_name}-good", topic)
    loop = DevLoop(
        {"good": good},
        tansu.bootstrap,
        endpoint_port=0,
        python_for=lambda folder: sys.executable,
        backoff_start=0.2,
    )
    async with loop:
        await until(lambda: loop.supervisor.apps["good"].status == "running", 60, "app runs")
        yield loop, topic


async def test_apps_screen_status_counters_controls_and_grids(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    (tmp_path / "good").mkdir()
    good = write_orders_app(tmp_path / "good", f"{unique_name}-good", topic)
    broken = write_broken_app(tmp_path / "broken")
    loop = DevLoop(
        {"good": good, "broken": broken},
        tansu.bootstrap,
        endpoint_port=0,
        python_for=lambda folder: sys.executable,
        backoff_start=0.2,
    )
    async with loop:
        hooks = list(loop.log_sinks), list(loop.supervisor.on_change)
        tui = AeroGridApp(loop)
        async with tui.run_test(size=SIZE) as pilot:
            assert isinstance(tui.screen, AppsScreen)
            await until(lambda: cell(tui, "good", "status") == "● running", 60, "good runs")

            # counters move as orders arrive (one malformed: an error, dead-lettered)
            await produce(
                tansu.bootstrap,
                topic,
                [(b"k", b'{"product": "p", "quantity": 1}')] * 5 + [(b"bad", b"not json")],
            )
            await until(
                lambda: (
                    number(tui, "good", "records") >= 6
                    and number(tui, "good", "errors") >= 1
                    and number(tui, "good", "dlq") >= 1
                ),
                what="counters",
            )

            # the broken app: crashed, with its exit code and its error line
            await until(
                lambda: (
                    cell(tui, "broken", "status") == "● crashed"
                    and "RuntimeError: not yet" in cell(tui, "broken", "info")
                ),
                what="broken app shown crashed",
            )
            assert cell(tui, "broken", "info").startswith("exit 2")
            assert number(tui, "broken", "restarts") >= 1
            select(tui, "broken")
            await pilot.pause()
            assert "not yet" in static_text(tui.screen.query_one(".app-tail", Static))

            # ... and in its logs, one key away
            await pilot.press("l")
            logs = tui.screen
            assert isinstance(logs, LogsScreen) and logs.source == "broken"
            log = logs.query_one(Log)
            await until(lambda: any("not yet" in line for line in log.lines), what="logs")

            # back to the apps: stop, start and restart the good app by key
            await pilot.press("1")
            assert isinstance(tui.screen, AppsScreen)
            app = loop.supervisor.apps["good"]
            select(tui, "good")
            await pilot.press("x")
            await until(lambda: cell(tui, "good", "status") == "● stopped", what="stopped")
            assert app.process is not None and app.process.returncode is not None
            await pilot.press("s")
            await until(lambda: cell(tui, "good", "status") == "● running", 60, "started")
            first = app.ports["grpc"]
            await pilot.press("r")
            await until(
                lambda: (
                    cell(tui, "good", "status") == "● running"
                    and app.ports.get("grpc") not in (None, first)
                ),
                60,
                "restarted",
            )
            assert app.restarts == 0  # stopping and restarting by hand is not a crash

            # its grid opens from a key (one grid: no pick) ...
            await pilot.press("g")
            await until(lambda: isinstance(tui.screen, GridScreen), what="grid screen")
            grid = tui.screen
            assert isinstance(grid, GridScreen)
            assert (grid.app_name, grid.grid_name) == (f"{unique_name}-good", "product_sum")
            assert grid.endpoint == loop.address
            await pilot.press("escape")
            assert isinstance(tui.screen, AppsScreen)

            # ... and from the command palette, by name
            await pilot.press("ctrl+p")
            await pilot.pause(0.8)  # the palette asks the running apps for their grids
            await pilot.press(*"product_sum", "enter")
            await until(lambda: isinstance(tui.screen, GridScreen), what="grid from palette")
            await pilot.press("escape")

            # promote without a cloud target in aerogrid.toml: it says how to add one
            with patch.object(tui, "notify", wraps=tui.notify) as notify:
                await pilot.press("p")
                await pilot.pause()
            assert isinstance(tui.screen, AppsScreen)
            assert "[cloud.targets." in notify.call_args.args[0]

            await pilot.press("q")
        assert tui.return_code == 0
        # the TUI left nothing hooked into the loop, which keeps running
        assert (loop.log_sinks, loop.supervisor.on_change) == hooks
        assert loop.supervisor.apps["good"].status == "running"


async def test_logs_follow_pause_search_and_one_app(
    orders_loop: tuple[DevLoop, str],
) -> None:
    loop, _ = orders_loop
    tui = AeroGridApp(loop)
    async with tui.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        screen = tui.screen
        assert isinstance(screen, LogsScreen)
        log = screen.query_one(Log)
        status = screen.query_one(".logs-status", Static)

        # thousands of lines at once: shown in batches, bounded, following the end
        for i in range(MAX_LINES + 2000):
            loop.say(f"line {i}" + (" needle" if i % 1000 == 0 else ""))
        await until(lambda: any(f"line {MAX_LINES + 1999}" in s for s in log.lines[-5:]))
        assert log.line_count <= MAX_LINES
        await until(lambda: log.scroll_y == log.max_scroll_y > 0, what="at the end")
        assert "following" in static_text(status)

        # pause: nothing moves, the status counts what waits; resume shows it
        await pilot.press("space")
        shown = log.line_count, log.lines[-1]
        for i in range(50):
            loop.say(f"while paused {i}")
        await pilot.pause(0.3)
        assert (log.line_count, log.lines[-1]) == shown
        assert "paused (50 new lines)" in static_text(status)
        await pilot.press("space")

        def resumed() -> bool:
            # the 50 lines that waited, in order (the app may log more after them)
            waited = [line for line in log.lines[-200:] if "while paused " in line]
            return len(waited) == 50 and all(
                line.endswith(f"while paused {i}") for i, line in enumerate(waited)
            )

        await until(resumed, what="resumed")

        # follow off: the view stays where the user put it
        await pilot.press("f")
        log.scroll_home(animate=False)
        await pilot.pause()
        for i in range(20):
            loop.say(f"not followed {i}")
        await until(lambda: "not followed 19" in log.lines[-1])
        await pilot.pause(0.2)
        assert log.scroll_y == 0
        await pilot.press("f")
        await until(lambda: log.scroll_y == log.max_scroll_y, what="following again")

        # search: only matching lines (highlighted), escape brings everything back
        await pilot.press("slash", *"needle", "enter")
        await until(lambda: 0 < log.line_count < 100, what="search applied")
        assert all("needle" in line for line in log.lines)
        assert "search: needle" in static_text(status)
        await pilot.press("escape")
        await until(lambda: log.line_count > 1000, what="search cleared")

        # one app's lines (no loop lines, no prefix)
        await pilot.press("a")
        assert screen.source == "good"
        await until(lambda: log.line_count > 0, what="the app's lines")
        assert not any("needle" in line or line.startswith("good ") for line in log.lines)
        await pilot.press("a")
        assert screen.source == "aerogrid"


async def test_topics_browse_and_produce(tansu: Broker, orders_loop: tuple[DevLoop, str]) -> None:
    loop, topic = orders_loop
    settings = BrokerSettings.parse(tansu.bootstrap)
    order = {"product": "tea", "quantity": 2}
    await kafka_tools.produce(
        settings,
        topic,
        [json.dumps(order).encode()],
        key=b"o1",
        headers=[("source", b"till-3"), ("trace-id", b"7f3a")],
    )
    tui = AeroGridApp(loop)
    async with tui.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        topics = tui.screen
        assert isinstance(topics, TopicsScreen)
        await until(lambda: cell(tui, topic, "records") == "1", what="topic listed")
        assert cell(tui, topic, "partitions") == "3"
        ends = cell(tui, topic, "ends").split()  # "0:0  1:1  2:0": the one record's partition
        assert sorted(end.split(":")[1] for end in ends) == ["0", "0", "1"]
        # `/` filters the list down to the topic (every word must match; typing is slow)
        await pilot.press("slash", *f"{topic.removesuffix('-orders')[-8:]} orders", "enter")
        assert table_of(tui).selected == topic
        assert all(topic in row.key for row in table_of(tui)._shown)

        # enter, enter: browse from the beginning
        await pilot.press("enter")
        assert isinstance(tui.screen, BrowseForm)
        await pilot.press("enter")
        await until(lambda: isinstance(tui.screen, TopicBrowserScreen), what="browser")
        browser = tui.screen
        assert isinstance(browser, TopicBrowserScreen)
        await until(lambda: len(browser.records) == 1, what="records read")
        (record,) = browser.records.values()
        assert (record.key, record.headers) == (
            b"o1",
            (("source", b"till-3"), ("trace-id", b"7f3a")),
        )
        detail = static_text(browser.query_one(".record", Static))
        assert '"product": "tea",' in detail and '"quantity": 2' in detail  # pretty-printed
        assert "source = till-3" in detail and "trace-id = 7f3a" in detail
        assert f"partition {record.partition} · offset {record.offset}" in detail

        # from an offset past it: nothing; from the end: it again
        await pilot.press("o", "down", "down", "enter", *str(record.offset + 1), "enter")
        await until(lambda: not browser.records, what="nothing after the offset")
        await pilot.press("e")
        await until(lambda: len(browser.records) == 1, what="from the end")

        # the producer form: a bad header line is refused, nothing is sent
        await pilot.press("n")
        form = tui.screen
        assert isinstance(form, ProducerForm)
        await pilot.press(*"o2", "tab", *'{"n": 1}', "tab", *"a=1", "enter", *"oops", "ctrl+s")
        error = form.query_one(".error", Static)
        assert "header line 2 is not NAME=VALUE: 'oops'" in static_text(error)
        # invalid JSON while JSON is asked for: refused too
        form.query_one("#headers", TextArea).text = "trace=abc"
        form.query_one("#value", TextArea).text = '{"product": "cake", '
        await pilot.press("ctrl+s")
        assert "the value is not valid JSON" in static_text(error)
        assert tui.screen is form
        await pilot.pause(0.3)
        listed = {t.name: t.ends for t in await kafka_tools.list_topics(settings)}
        assert sum(listed[topic].values()) == 1  # nothing was sent
        # fixed: sent, and the browser reads it back
        form.query_one("#value", TextArea).text = '{"product": "cake", "quantity": 1}'
        await pilot.press("ctrl+s")
        await until(lambda: tui.screen is browser, what="form closed after sending")
        await until(lambda: len(browser.records) == 2, what="browser reloaded")
    sent = await kafka_tools.browse(settings, topic)
    assert [(r.key, r.headers) for r in sent] == [
        (b"o1", (("source", b"till-3"), ("trace-id", b"7f3a"))),
        (b"o2", (("trace", b"abc"),)),
    ]
    assert json.loads(sent[1].value or b"") == {"product": "cake", "quantity": 1}


async def test_unreachable_broker_is_said_and_the_tui_stays_usable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    bootstrap = f"127.0.0.1:{port}"
    loop = DevLoop({}, bootstrap, endpoint_port=0)  # not started: the TUI only looks
    broker = ExternalMode(ExternalConfig(BrokerSettings.parse(bootstrap)))
    tui = AeroGridApp(loop, broker=broker)
    async with tui.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        screen = tui.screen
        assert isinstance(screen, BrokerScreen)
        facts = screen.query_one(".broker-facts", Static)
        await until(lambda: "connection refused" in static_text(facts), what="health")
        text = static_text(facts)
        assert "external" in text and bootstrap in text and "● down" in text

        # topics: the error in the screen
        await pilot.press("3")
        topics = tui.screen
        assert isinstance(topics, TopicsScreen)
        error = topics.query_one(".error", Static)
        await until(lambda: "cannot list topics" in static_text(error), 30, "topics error")
        assert bootstrap in static_text(error)

        # the producer form: a valid message that cannot be sent says why, stays open
        await pilot.press("n")
        form = tui.screen
        assert isinstance(form, ProducerForm)
        await pilot.press(*"orders", "tab", "tab", *'{"a": 1}', "ctrl+s")
        form_error = form.query_one(".error", Static)
        await until(lambda: "could not send" in static_text(form_error), 30, "send error")
        assert not form.sending
        assert tui.screen is form
        await pilot.press("escape")

        # and everything still answers
        await pilot.press("1", "2", "question_mark")
        assert "Keys" in static_text(tui.screen.query_one(".dialog-title", Static))
        await pilot.press("escape", "q")
    assert tui.return_code == 0


async def test_a_broker_not_given_to_the_tui_is_checked_not_managed() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    tui = AeroGridApp(DevLoop({}, bootstrap, endpoint_port=0))
    async with tui.run_test(size=SIZE) as pilot:
        await pilot.press("4", "u")
        screen = tui.screen
        error = screen.query_one(".error", Static)
        await until(lambda: "not started by this TUI" in static_text(error), what="up refused")
        facts = screen.query_one(".broker-facts", Static)
        await until(lambda: "connection refused" in static_text(facts), what="health")
        # down asks first; "n" leaves it alone
        await pilot.press("d")
        await pilot.press("n")
        assert tui.screen is screen


async def test_broker_up_and_down_of_the_embedded_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEROGRID_HOME", str(tmp_path / "home"))  # a broker of this test only
    broker = EmbeddedMode(free_port())
    broker.chosen_because = "mode embedded (--mode)"  # as open_broker says why
    tui = AeroGridApp(DevLoop({}, broker.uri, endpoint_port=0), broker=broker)
    try:
        async with tui.run_test(size=SIZE) as pilot:
            await pilot.press("4")
            screen = tui.screen
            facts = screen.query_one(".broker-facts", Static)
            await until(lambda: "no broker running" in static_text(facts), what="down at first")
            assert "mode embedded (--mode)" in static_text(facts)  # why this broker
            assert "● down" in static_text(facts)
            await pilot.press("u")
            await until(lambda: "● up" in static_text(facts), 60, "up")
            assert broker.uri in static_text(facts)
            # down asks first: "n" keeps it, "y" stops it
            await pilot.press("d", "n")
            await pilot.pause(0.3)
            assert "● up" in static_text(facts)
            await pilot.press("d", "y")
            await until(lambda: "● down" in static_text(facts), 30, "down")
            assert tui.broker_status is not None and not tui.broker_status.running
    finally:
        broker.down()


async def test_open_grid_at_start_then_back_to_the_apps(
    orders_loop: tuple[DevLoop, str], unique_name: str
) -> None:
    loop, _ = orders_loop
    tui = AeroGridApp(loop, open_grid=(f"{unique_name}-good", "product_sum"), title="demo")
    async with tui.run_test(size=SIZE) as pilot:
        await until(lambda: isinstance(tui.screen, GridScreen), what="grid at start")
        assert tui.title == "demo"
        await pilot.press("escape")
        assert isinstance(tui.screen, AppsScreen)
