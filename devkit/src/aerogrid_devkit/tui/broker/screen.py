"""The broker section: mode, address, health and detail, with up and down.

The app checks the broker's health every few seconds in a worker; this screen only draws
what the last check (or action) found, whenever it changes.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from aerogrid.settings import BrokerSettings
from aerogrid_devkit.brokers import BrokerError, BrokerStatus, check_kafka
from aerogrid_devkit.tui.screens.section import SectionScreen, broker_health


class ObservedBroker:
    """The loop's broker when the caller passed no broker control: checked, not managed.

    A broker started elsewhere (like the demo's own) is checked the way clients connect
    (`brokers.check_kafka`), but never started or stopped from here.
    """

    mode = "external"

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def settings(self) -> BrokerSettings:
        return BrokerSettings.from_env(self.uri)

    def status(self) -> BrokerStatus:
        settings = self.settings()
        reach = check_kafka(settings)
        detail = f"{settings.bootstrap} answers" if reach.ok else reach.cause
        return BrokerStatus(self.mode, reach.ok, settings.bootstrap, detail)

    def up(self) -> BrokerStatus:
        raise BrokerError(self._not_managed())

    def down(self) -> BrokerStatus:
        raise BrokerError(self._not_managed())

    def _not_managed(self) -> str:
        return (
            f"the broker at {self.uri} was not started by this TUI: start or stop it "
            "where it runs (the local broker: aerogrid broker up|down)"
        )


class BrokerScreen(SectionScreen):
    """What the broker is and whether it answers; `u` up, `d` down, `r` check now."""

    SECTION = "broker"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("u", "up", "Up", tooltip="Start the broker"),
        Binding("d", "down", "Down", tooltip="Stop the broker (asks first)"),
        Binding("r", "check", "Check now", tooltip="Check its health now"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="panel broker-panel") as panel:
            panel.border_title = "Broker"
            yield Static(classes="broker-facts")
            yield Static(classes="error")

    def on_mount(self) -> None:
        self.watch(self.app, "broker_version", self._redraw, init=True)

    def _redraw(self) -> None:
        aero = self.aero
        status = aero.broker_status
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="dim", justify="right")
        facts.add_column()
        facts.add_row("Mode", Text(aero.broker.mode, style="bold"))
        chosen_because = getattr(aero.broker, "chosen_because", "")
        if isinstance(chosen_because, str) and chosen_because:
            facts.add_row("Why", chosen_because)
        facts.add_row(
            "Address", status.bootstrap if status and status.bootstrap else aero.broker.uri
        )
        facts.add_row("Health", broker_health(aero))
        facts.add_row("Detail", status.detail if status else "—")
        facts.add_row("Apps use", aero.devloop.broker_uri)
        facts.add_row("Checked", f"every {aero.broker_poll_seconds:g}s (r checks now)")
        self.query_one(".broker-facts", Static).update(facts)
        error = self.query_one(".error", Static)
        error.update(Text(aero.broker_error, style="bold red"))
        error.display = bool(aero.broker_error)

    def action_up(self) -> None:
        self.aero.broker_up()

    def action_down(self) -> None:
        self.aero.broker_down()

    def action_check(self) -> None:
        self.aero.check_broker()
