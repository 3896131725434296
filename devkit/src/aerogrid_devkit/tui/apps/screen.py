"""The apps section: every supervised app with its status and counters, and its controls.

The table redraws at most four times a second, and only when the supervisor reported a
change since the last redraw, however many changes arrive in between. An app that runs
several replicas also shows each one (id, pid, status, role, lag) under the table, and
`K` kills its active replica (after a yes), a demonstration of failover.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from aerogrid_devkit.app_process import AppProcess, ReplicaProcess, kill_process_group
from aerogrid_devkit.tui.screens.confirm import ConfirmScreen
from aerogrid_devkit.tui.screens.section import SectionScreen
from aerogrid_devkit.tui.widgets.filter_table import FilterableTable, TableRow

STATUS_STYLES = {
    "running": "bold green",
    "starting": "yellow",
    "reloading": "cyan",
    "crashed": "bold red",
    "stopped": "dim",
}

ROLE_STYLES = {
    "active": "bold green",
    "standby": "cyan",
    "serve-only": "blue",
    "starting": "yellow",
}

COLUMNS = (
    ("app", "App"),
    ("status", "Status"),
    ("rate", "Records/s"),
    ("records", "Records"),
    ("errors", "Errors"),
    ("dlq", "Dead-lettered"),
    ("restarts", "Restarts"),
    ("info", "Info"),
)

#: Lines of the supervisor itself, not of the app (they never hold the app's error).
_SUPERVISOR_LINE = "[aerogrid dev]"
#: An error as a program reports it: "error: ...", or a traceback's last line (at column 0).
_ERROR_REPORT = re.compile(
    r"^(error:|fatal:|[\w.]*(Error|Exception|Exit|Interrupt)\b)", re.IGNORECASE
)
#: Any line that mentions an error (a fallback: indented traceback lines match too).
_ERROR_MENTION = re.compile(r"\b\w*(Error|Exception)\b|\berror\b|Traceback", re.IGNORECASE)
_EXCEPTION = re.compile(r"\b[A-Z]\w*(Error|Exception|Exit|Interrupt)\b")
#: Lines of the log tail shown under the table for the selected app.
TAIL_LINES = 8


def last_error_line(logs: Iterable[str], scan: int = 200) -> str | None:
    """The newest line of an app's output that reads like an error (None if none does)."""
    recent = [line for line in list(logs)[-scan:] if not line.startswith(_SUPERVISOR_LINE)]
    for pattern in (_ERROR_REPORT, _ERROR_MENTION):
        for line in reversed(recent):
            if pattern.search(line):
                return line.strip()
    return None


def short_error(line: str, width: int = 44) -> str:
    """The exception and its message, without the location before it, cut to `width`."""
    found = _EXCEPTION.search(line)
    text = line[found.start() :] if found else line
    return text if len(text) <= width else text[: width - 1] + "…"


def status_text(status: str) -> Text:
    return Text(f"● {status}", style=STATUS_STYLES.get(status, ""))


def app_row(app: AppProcess) -> TableRow:
    stats = app.stats
    if app.status == "crashed":
        error = last_error_line(app.logs)
        info: str | Text = Text(
            f"exit {app.exit_code}" + (f": {short_error(error)}" if error else ""), style="red"
        )
    elif app.status == "stopped":
        info = "stopped (s starts it)"
    elif stats.health:
        info = Text(f"⚠ {stats.health}", style="yellow")
    else:
        info = short_path(app.path)
        if len(app.replicas) > 1:
            info += f" · {len(app.running())}/{len(app.replicas)} replicas"
    return TableRow(
        app.name,
        (
            Text(app.name, style="bold"),
            status_text(app.status),
            Text(f"{stats.records_per_s:,.1f}", justify="right"),
            Text(f"{stats.records_in:,.0f}", justify="right"),
            _count(stats.errors, "yellow"),
            _count(stats.dead_lettered, "yellow"),
            _count(float(app.restarts), "red"),
            info,
        ),
    )


def short_path(path: Path) -> str:
    """The app file and its folder: enough to tell apps apart, short enough for a cell."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def replica_table(app: AppProcess) -> Table:
    """Each replica of `app`: id, pid, status, role (from its `/replica`), lag, restarts."""
    table = Table(box=None, expand=True, pad_edge=False, header_style="bold")
    for header in ("Replica", "Pid", "Status", "Role", "Lag", "Restarts"):
        table.add_column(header, justify="right" if header in ("Pid", "Lag") else "left")
    for replica in app.replicas:
        lag = "–" if replica.lag is None else f"{replica.lag:,}"
        table.add_row(
            replica.id,
            str(replica.pid or "–"),
            status_text(replica.status),
            Text(replica.role, style=ROLE_STYLES.get(replica.role, "dim")),
            Text(lag, style="yellow" if replica.lag else ""),
            _count(float(replica.restarts), "red"),
        )
    return table


def active_replica(app: AppProcess) -> ReplicaProcess | None:
    """The replica that reports itself active and runs (None while none does)."""
    return next((r for r in app.replicas if r.role == "active" and r.pid is not None), None)


def _count(value: float, style: str) -> Text:
    return Text(f"{value:,.0f}", style=style if value else "", justify="right")


class AppsScreen(SectionScreen):
    """The supervised apps: status, records/s, errors, dead letters, restarts."""

    SECTION = "apps"
    _seen = -1
    _seen_logs = -1
    REFRESH_SECONDS: ClassVar[float] = 0.25
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start", tooltip="Start the selected app"),
        Binding("x", "stop", "Stop", tooltip="Stop the selected app (until started)"),
        Binding("r", "restart", "Restart", tooltip="Restart the selected app now"),
        Binding("l", "logs", "Logs", tooltip="The selected app's logs"),
        Binding("g", "grids", "Grids", tooltip="Open its grid (a pick when several)"),
        Binding("p", "promote", "Promote", tooltip="Promote to a cloud target (aerogrid.toml)"),
        Binding(
            "K",
            "kill_active",
            "Kill active",
            show=False,
            tooltip="SIGKILL its active replica (asks first): a failover demo",
        ),
    ]

    def compose_body(self) -> ComposeResult:
        yield FilterableTable(COLUMNS, title="Apps", empty="no apps in this workspace")
        yield Static(classes="app-replicas panel")
        yield Static(classes="app-tail panel")

    def on_mount(self) -> None:
        self._refresh_if_changed()
        self.set_interval(self.REFRESH_SECONDS, self._refresh_if_changed, name="apps-refresh")
        self.query_one(FilterableTable).focus_table()

    def _refresh_if_changed(self) -> None:
        version = self.aero.apps_version
        if version == self._seen:
            if self.aero.logbook.total != self._seen_logs:
                self._show_tail()  # new output, same status
            return
        self._seen = version
        apps = self.aero.devloop.supervisor.apps
        self.query_one(FilterableTable).set_rows([app_row(apps[n]) for n in sorted(apps)])
        self._show_replicas()
        self._show_tail()

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_replicas()
        self._show_tail()

    def _show_replicas(self) -> None:
        panel = self.query_one(".app-replicas", Static)
        app = self._selected()
        panel.display = app is not None and len(app.replicas) > 1
        if app is not None and panel.display:
            panel.update(replica_table(app))
            panel.border_title = f"{app.name} · replicas (K kills the active one)"

    def _show_tail(self) -> None:
        self._seen_logs = self.aero.logbook.total
        tail = self.query_one(".app-tail", Static)
        app = self._selected()
        if app is None:
            tail.update("")
            tail.border_title = None
            return
        error = last_error_line(app.logs) if app.status == "crashed" else None
        text = Text(no_wrap=True, overflow="ellipsis")
        for line in list(app.logs)[-TAIL_LINES:]:
            text.append(line + "\n", style="red" if line.strip() == error else "")
        if not app.logs:
            text.append("(no output yet)", style="dim")
        tail.update(text)
        tail.border_title = f"{app.name} · last lines (l for all)"

    def _selected(self) -> AppProcess | None:
        name = self.query_one(FilterableTable).selected
        return None if name is None else self.aero.devloop.supervisor.apps.get(name)

    def _selected_name(self) -> str | None:
        name = self.query_one(FilterableTable).selected
        if name is None:
            self.notify("no app selected", severity="warning")
        return name

    def action_start(self) -> None:
        if name := self._selected_name():
            self.aero.start_app(name)

    def action_stop(self) -> None:
        if name := self._selected_name():
            self.aero.stop_app(name)

    def action_restart(self) -> None:
        if name := self._selected_name():
            self.aero.restart_app(name)

    async def action_logs(self) -> None:
        if name := self._selected_name():
            await self.aero.open_logs(name)

    def action_grids(self) -> None:
        if name := self._selected_name():
            self.aero.open_grids(name)

    def action_kill_active(self) -> None:
        """SIGKILL the selected app's active replica, once the user says yes."""
        app = self._selected()
        if app is None:
            self.notify("no app selected", severity="warning")
            return
        active = active_replica(app)
        if active is None or active.pid is None:
            roles = ", ".join(f"{r.id} {r.role}" for r in app.replicas)
            self.notify(f"{app.name} has no active replica now ({roles})", severity="warning")
            return
        pid = active.pid
        after = (
            "A standby becomes active after the failover timeout; its subscribers resume "
            "on another replica. The supervisor restarts the killed one."
            if len(app.replicas) > 1
            else "It is the app's only replica: the supervisor restarts it."
        )

        def confirmed(yes: bool | None) -> None:
            if yes and active.pid == pid:  # still the same process
                kill_process_group(pid)
                self.notify(f"killed {active.id} (pid {pid})")

        self.app.push_screen(
            ConfirmScreen(f"SIGKILL {active.id}, the active replica (pid {pid})?", after),
            confirmed,
        )

    def action_promote(self) -> None:
        if name := self._selected_name():
            self.aero.promote(name)

    @on(DataTable.RowSelected)
    def _selected_row(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_grids()
