"""What every section screen shares: the nav bar on top, the footer of keys below."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from aerogrid.errors import ConfigurationError
from aerogrid_devkit.brokers import BrokerError
from aerogrid_devkit.tui.widgets.nav import NavBar

if TYPE_CHECKING:
    from aerogrid_devkit.tui.app import AeroGridApp


class SectionScreen(Screen[None]):
    """A section of the TUI (apps, logs, topics, broker): subclasses compose the body."""

    SECTION: ClassVar[str] = ""

    @property
    def aero(self) -> AeroGridApp:
        return cast("AeroGridApp", self.app)

    def compose(self) -> ComposeResult:
        yield NavBar(self.SECTION)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError
        yield  # pragma: no cover - makes this a generator like the overrides

    def on_mount(self) -> None:
        self.watch(self.app, "broker_version", self._update_nav, init=True)

    def _update_nav(self) -> None:
        aero = self.aero
        # Health first: on a narrow terminal the end of the line is what gets cut.
        info = Text(no_wrap=True, overflow="ellipsis", justify="right")
        info.append("broker ", style="dim")
        info.append_text(broker_health(aero))
        info.append(f" {aero.broker.uri}")
        info.append("   endpoint ", style="dim")
        info.append(aero.devloop.address + " ")
        self.query_one(NavBar).show(aero.title, info)


def broker_health(aero: AeroGridApp) -> Text:
    """A dot and a word: up, down, unknown (not checked yet), or what is in progress."""
    status = aero.broker_status
    if aero.broker_busy:
        return Text(f"◌ {aero.broker_busy}", style="yellow")
    if aero.broker_error and status is None:
        return Text("● error", style="bold red")
    if status is None:
        return Text("◌ checking", style="dim")
    return Text("● up", style="bold green") if status.running else Text("● down", style="bold red")


def describe_error(exc: BaseException) -> str:
    """An exception as one readable line (timeouts and nameless errors included)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time (is the broker reachable?)"
    text = str(exc).strip()
    if isinstance(exc, BrokerError | ConfigurationError | LookupError) and text:
        return text  # written for people already
    name = type(exc).__name__
    return f"{name}: {text}" if text and not text.startswith(name) else (text or name)
