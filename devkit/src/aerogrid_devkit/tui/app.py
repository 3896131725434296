"""`AeroGridApp`: the devkit's terminal UI over a running local loop.

The caller owns the loop (it starts it before and stops it after); the TUI observes it
through callbacks that only set counters or append to a bounded log book, and controls it
with the supervisor's start/stop/restart. Each section (apps, logs, topics, broker) is a
Textual mode with its own screen stack, so a grid opened from the apps section stays
open while you look at the logs. Everything that may block (Kafka, the broker, gRPC)
runs in a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from aerogrid.client import GridClient, GridClientError
from aerogrid_devkit.supervisor import AppProcess
from aerogrid_devkit.tui.apps.screen import AppsScreen
from aerogrid_devkit.tui.broker.screen import BrokerScreen, ObservedBroker
from aerogrid_devkit.tui.commands import AeroGridCommands
from aerogrid_devkit.tui.grid.picker import GridPicker
from aerogrid_devkit.tui.logs.log_book import LogBook
from aerogrid_devkit.tui.logs.screen import LogsScreen
from aerogrid_devkit.tui.promote.action import promote_app
from aerogrid_devkit.tui.screens.confirm import ConfirmScreen
from aerogrid_devkit.tui.screens.help import HelpScreen, KeyGroup
from aerogrid_devkit.tui.screens.section import describe_error
from aerogrid_devkit.tui.session import (
    LOOP_LOG,
    BrokerLike,
    BrokerStatusLike,
    LoopLike,
)
from aerogrid_devkit.tui.topics.browser import TopicBrowserScreen
from aerogrid_devkit.tui.topics.producer import ProducerForm
from aerogrid_devkit.tui.topics.screen import TopicsScreen
from aerogrid_devkit.tui.widgets.filter_table import FilterableTable
from aerogrid_devkit.tui.widgets.nav import SECTIONS

if TYPE_CHECKING:
    from aerogrid_cloud.targets import CloudTarget

_T = TypeVar("_T")


class AeroGridApp(App[None]):
    """Apps, logs, topics and the broker of a running `DevLoop`, keyboard first."""

    CSS_PATH = "aerogrid.tcss"
    #: Each section is a mode with its own screen stack (the nav bar's `SECTIONS`).
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "apps": AppsScreen,
        "logs": LogsScreen,
        "topics": TopicsScreen,
        "broker": BrokerScreen,
    }
    DEFAULT_MODE: ClassVar[str] = "apps"
    #: The palette (ctrl+p) offers the TUI's own commands only.
    COMMANDS: ClassVar = {AeroGridCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        # The nav bar shows the section keys, so the footer leaves them out.
        *(Binding(key, f"section('{mode}')", label, show=False) for mode, key, label in SECTIONS),
        Binding("question_mark", "help", "Help", tooltip="Every key (this list)"),
        Binding("q", "quit", "Quit", tooltip="Leave the TUI"),
    ]

    #: Seconds between broker health checks (the nav bar and the broker section show it).
    broker_poll_seconds: ClassVar[float] = 3.0
    #: Changes when a broker check or action finishes (screens watch it).
    broker_version: reactive[int] = reactive(0, init=False)

    def __init__(
        self,
        loop: LoopLike,
        *,
        broker: BrokerLike | None = None,
        open_grid: tuple[str, str] | None = None,
        title: str = "AeroGrid",
        cloud_targets: Mapping[str, CloudTarget] | None = None,
    ) -> None:
        super().__init__()
        self.devloop = loop
        #: Where `p` promotes an app (the workspace's [cloud.targets]).
        self.cloud_targets = dict(cloud_targets or {})
        self.broker: BrokerLike = broker or ObservedBroker(loop.broker_uri)
        self.logbook = LogBook()
        #: Bumped on every change the supervisor reports; views redraw at their own pace.
        self.apps_version = 0
        self.broker_status: BrokerStatusLike | None = None
        self.broker_error = ""
        self.broker_busy = ""
        self._open_grid = open_grid
        self._checking_broker = False
        #: Up/down actions so far: a health check that overlapped one is dropped.
        self._broker_controls = 0
        self.title = title

    # -- life ----------------------------------------------------------------------

    def on_mount(self) -> None:
        for line in self.devloop.messages:
            self.logbook.add(LOOP_LOG, line)
        for app in self.devloop.supervisor.apps.values():
            for line in app.logs:
                self.logbook.add(app.name, line)
        self.devloop.log_sinks.append(self._on_log)
        self.devloop.supervisor.on_change.append(self._on_change)
        self.check_broker()
        self.set_interval(self.broker_poll_seconds, self.check_broker, name="broker-poll")
        if self._open_grid is not None:
            self.open_grid(*self._open_grid)

    def on_unmount(self) -> None:
        # The loop outlives the TUI: leave nothing of ours hooked into it.
        _discard(self.devloop.log_sinks, self._on_log)
        _discard(self.devloop.supervisor.on_change, self._on_change)

    def _on_log(self, source: str, line: str) -> None:
        self.logbook.add(source, line)

    def _on_change(self, app: AppProcess) -> None:
        self.apps_version += 1

    # -- sections ------------------------------------------------------------------

    async def action_section(self, mode: str) -> None:
        await self.switch_mode(mode)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_groups()))

    def key_groups(self) -> list[KeyGroup]:
        """Every key, by where it works (for the help screen)."""
        groups: list[KeyGroup] = [
            ("Everywhere", [*self.BINDINGS, Binding("ctrl+p", "", "Command palette")]),
            (
                "Lists (apps, topics, messages)",
                [
                    Binding("up,down,pageup,pagedown,home,end", "", "Move"),
                    *FilterableTable.BINDINGS,
                ],
            ),
            ("Apps", [*AppsScreen.BINDINGS, Binding("enter", "", "Grids of the app")]),
            ("Logs", LogsScreen.BINDINGS),
            ("Topics", TopicsScreen.BINDINGS),
            ("Topic browser", TopicBrowserScreen.BINDINGS),
            ("Producer form", [*ProducerForm.BINDINGS, Binding("tab,shift+tab", "", "Next field")]),
            ("Broker", BrokerScreen.BINDINGS),
        ]
        try:
            from aerogrid_devkit.tui.grid.screen import GridScreen
        except ImportError:
            return groups
        return [*groups, ("Grid view", GridScreen.BINDINGS)]

    # -- apps ----------------------------------------------------------------------

    def app_names(self) -> list[str]:
        return sorted(self.devloop.supervisor.apps)

    def start_app(self, name: str) -> None:
        self.devloop.supervisor.start_app(name)
        self.notify(f"starting {name}")

    def restart_app(self, name: str) -> None:
        self.devloop.supervisor.restart_app(name)
        self.notify(f"restarting {name}")

    def stop_app(self, name: str) -> None:
        async def stop() -> None:
            await self.devloop.supervisor.stop_app(name)
            self.notify(f"{name} stopped")

        self.notify(f"stopping {name}")
        self.run_worker(stop(), group=f"stop-{name}", exclusive=True)

    def promote(self, name: str) -> None:
        """Promote an app to a cloud target (picked when the workspace has several)."""
        promote_app(self, name)

    async def open_logs(self, name: str | None) -> None:
        """The logs section, showing one app's lines (or every app's with None)."""
        await self.switch_mode("logs")
        for screen in self.screen_stack:
            if isinstance(screen, LogsScreen):
                screen.show_source(name)

    def open_grids(self, name: str) -> None:
        """The app's grid, or a pick of its grids when it has several."""
        self.run_worker(self._open_grids(name), group="grids", exclusive=True)

    async def _open_grids(self, name: str) -> None:
        process = self.devloop.supervisor.apps[name]
        port = process.ports.get("grpc")
        if process.status != "running" or port is None:
            self.notify(
                f"{name} is {process.status}: its grids can be opened once it runs",
                severity="warning",
            )
            return
        try:
            async with GridClient(f"127.0.0.1:{port}") as client:
                summaries = await asyncio.wait_for(client.apps(), 5.0)
        except (GridClientError, TimeoutError) as exc:
            self.notify(f"cannot list the grids of {name}: {exc}", severity="error")
            return
        grids = [(s.name, g.name) for s in summaries for g in s.grids]
        if not grids:
            self.notify(f"{name} has no grids", severity="warning")
        elif len(grids) == 1:
            self.open_grid(*grids[0])
        else:

            def picked(choice: tuple[str, str] | None) -> None:
                if choice is not None:
                    self.open_grid(*choice)

            self.push_screen(GridPicker(name, grids), picked)

    def open_grid(self, app: str, grid: str) -> None:
        """Push the live view of one grid (served on the loop's endpoint) in the apps section."""
        try:
            from aerogrid_devkit.tui.grid.screen import GridScreen
        except ImportError as exc:
            self.notify(f"the grid view is not available: {exc}", severity="error")
            return
        if self.current_mode != "apps":
            self.switch_mode("apps")
        self.push_screen(GridScreen(self.devloop.address, app, grid))

    # -- topics -------------------------------------------------------------------

    def produce_message(
        self, topic: str = "", on_sent: Callable[[tuple[int, int] | None], None] | None = None
    ) -> None:
        """The producer form (prefilled with a topic); `on_sent` gets (partition, offset)."""
        self.push_screen(ProducerForm(topic), on_sent)

    # -- broker --------------------------------------------------------------------

    def check_broker(self) -> None:
        """Check the broker's health in the background (one check at a time)."""
        if not self._checking_broker:
            self._checking_broker = True
            self.run_worker(self._check_broker(), group="broker-status")

    async def _check_broker(self) -> None:
        controls = self._broker_controls
        try:
            status = await asyncio.to_thread(self.broker.status)
            error = ""
        except Exception as exc:  # a check that fails says why, like one that finds it down
            status, error = None, describe_error(exc)
        finally:
            self._checking_broker = False
        if controls == self._broker_controls:  # else up/down ran meanwhile: this is stale
            self.broker_status, self.broker_error = status, error
            self.broker_version += 1

    def broker_up(self) -> None:
        self.run_worker(self._control_broker("up"), group="broker", exclusive=True)

    def broker_down(self) -> None:
        """Stop the broker, once the user confirms (apps lose their broker)."""

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._control_broker("down"), group="broker", exclusive=True)

        self.push_screen(
            ConfirmScreen(
                f"Stop the {self.broker.mode} broker at {self.broker.uri}?",
                "Running apps lose their broker until it is up again.",
            ),
            confirmed,
        )

    async def _control_broker(self, action: str) -> None:
        self._broker_controls += 1
        self.broker_busy = "starting" if action == "up" else "stopping"
        self.broker_version += 1
        call = self.broker.up if action == "up" else self.broker.down
        try:
            self.broker_status = await asyncio.to_thread(call)
            self.broker_error = ""
            self.devloop.say(f"broker {action}: {self.broker_status.detail}")
        except Exception as exc:  # shown in the broker section and as a notification
            self.broker_error = f"broker {action} failed: {describe_error(exc)}"
            self.notify(self.broker_error, severity="error", timeout=8)
        finally:
            self.broker_busy = ""
            self.broker_version += 1


def _discard(sinks: list[_T], sink: _T) -> None:
    if sink in sinks:
        sinks.remove(sink)
