"""Promote from the TUI: the same client as `aerogrid promote`, its progress shown live.

The workspace's `[cloud.targets.NAME]` say where (tenant, kube context); with several,
the user picks one. The promote runs in a worker thread, on an event loop of its own (so
a slow cluster never holds up the TUI's), and reports each phase of the App's status as a
notification and a line in the logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from aerogrid_cloud.targets import CloudTarget

#: Shown when the workspace names no cluster to promote to.
NO_TARGETS = (
    "No cloud target: add one to aerogrid.toml, e.g.\n"
    '[cloud.targets.prod]\ntenant = "my-team"\ncontext = "my-cluster"'
)

Say = Callable[[str, str], None]


class TargetPicker(ModalScreen[str | None]):
    """Dismisses with the name of the chosen cloud target, or None on escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, app_name: str, targets: Mapping[str, CloudTarget]) -> None:
        super().__init__()
        self._app_name = app_name
        self._names = sorted(targets)
        self._targets = targets

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Promote {self._app_name} to", classes="dialog-title")
            yield OptionList(
                *(
                    Option(
                        f"{name}  (tenant {self._targets[name].tenant}, "
                        f"context {self._targets[name].context or 'current'})",
                        id=name,
                    )
                    for name in self._names
                )
            )
            yield Static("enter promotes · esc cancels", classes="dialog-detail")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._names[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)


def promote_folder(
    app_name: str,
    folder: Path,
    target: CloudTarget,
    say: Say,
    *,
    timeout: float = 300.0,
    kubeconfig: str | None = None,
) -> bool:
    """Promote the app in `folder` to `target` and follow it; blocking (run in a thread).

    `say(severity, line)` hears every step ("information", "warning" or "error").
    Returns whether the app reached Running.
    """
    try:
        from aerogrid_cloud.kube import Kube, KubeError, connect
        from aerogrid_cloud.promote import PromoteError, PromoteTimeout, build_app, promote
    except ImportError:
        say("error", "promote needs the aerogrid-cloud package (pip install aerogrid-cloud)")
        return False
    where = f"tenant {target.tenant}" + (f" on {target.context}" if target.context else "")

    async def follow(kube: Kube, app: Mapping[str, object]) -> bool:
        async with kube:
            state = await promote(
                kube,
                app,
                wait=True,
                timeout=timeout,
                on_phase=lambda s: say(
                    "error" if s.phase == "Failed" else "information",
                    f"{s.name}: {s.phase}" + (f" — {s.message}" if s.message else ""),
                ),
            )
        if state.phase != "Running":
            return False
        endpoint = state.endpoint or target.endpoint or ""
        say(
            "information", f"{state.name} runs in {where}" + (f" at {endpoint}" if endpoint else "")
        )
        return True

    try:
        app = build_app(folder, target.tenant)
        say("information", f"promoting {app_name} as {app['metadata']['name']} to {where}")
        return asyncio.run(follow(connect(kubeconfig, target.context), app))
    except PromoteTimeout as exc:
        say("warning", str(exc))
        return False
    except (PromoteError, KubeError) as exc:
        say("error", f"promote {app_name}: {exc}")
        return False
