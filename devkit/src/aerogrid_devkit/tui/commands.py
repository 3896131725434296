"""The command palette (ctrl+p): every action of the TUI, by name.

The commands are built when the palette opens, from the apps the loop runs and the grids
those apps serve (asked of each running app, briefly), so the palette names real things:
"Restart ordersapp", "Open grid ordersapp › product_sum".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from aerogrid.client import GridClient, GridClientError

if TYPE_CHECKING:
    from aerogrid_devkit.tui.app import AeroGridApp


@dataclass(frozen=True)
class Command:
    title: str
    run: Callable[[], Any] | Callable[[], Awaitable[Any]]
    help: str


class AeroGridCommands(Provider):
    """Sections, app control, grids, logs, topics, the broker and quitting."""

    _grids: list[tuple[str, str]]

    async def startup(self) -> None:
        self._grids = await _served_grids(self._app)

    @property
    def _app(self) -> AeroGridApp:
        return cast("AeroGridApp", self.app)

    def commands(self) -> list[Command]:
        app = self._app
        found = [
            Command("Apps", partial(app.switch_mode, "apps"), "the apps and their counters (1)"),
            Command("Logs of every app", partial(app.open_logs, None), "all output (2)"),
            Command("Topics", partial(app.switch_mode, "topics"), "topics and offsets (3)"),
            Command("Broker", partial(app.switch_mode, "broker"), "mode, address, health (4)"),
            Command("Help", app.action_help, "every key (?)"),
        ]
        for name in app.app_names():
            found += [
                Command(f"Start {name}", partial(app.start_app, name), "start a stopped app"),
                Command(f"Stop {name}", partial(app.stop_app, name), "stop it until started"),
                Command(f"Restart {name}", partial(app.restart_app, name), "restart it now"),
                Command(f"Open grids of {name}", partial(app.open_grids, name), "live grids"),
                Command(f"Open logs of {name}", partial(app.open_logs, name), "its output"),
                Command(f"Promote {name}", partial(app.promote, name), "to a cloud target"),
            ]
        found += [
            Command(
                f"Open grid {app_name} › {grid}",
                partial(app.open_grid, app_name, grid),
                "a live table of the grid",
            )
            for app_name, grid in getattr(self, "_grids", [])
        ]
        found += [
            Command("Produce a message", app.produce_message, "to a topic, from a form"),
            Command("Broker up", app.broker_up, f"start the {app.broker.mode} broker"),
            Command("Broker down", app.broker_down, f"stop the {app.broker.mode} broker"),
            Command("Quit", app.exit, "leave the TUI"),
        ]
        return found

    async def discover(self) -> Hits:
        for command in self.commands():
            yield DiscoveryHit(command.title, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self.commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.run, help=command.help)


async def _served_grids(app: AeroGridApp, timeout: float = 0.5) -> list[tuple[str, str]]:
    """(app, grid) of every running app, asked of each app directly (slow ones skipped)."""

    async def grids_of(port: int) -> list[tuple[str, str]]:
        try:
            async with GridClient(f"127.0.0.1:{port}") as client:
                summaries = await asyncio.wait_for(client.apps(), timeout)
        except (GridClientError, TimeoutError, OSError):
            return []
        return [(s.name, g.name) for s in summaries for g in s.grids]

    ports = [
        p.ports["grpc"]
        for p in app.devloop.supervisor.apps.values()
        if p.status == "running" and "grpc" in p.ports
    ]
    found = await asyncio.gather(*(grids_of(port) for port in ports))
    return sorted({grid for grids in found for grid in grids})
