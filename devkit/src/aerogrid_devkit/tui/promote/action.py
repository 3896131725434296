"""`p` on an app: promote it to the workspace's cloud target, its progress shown live.

The workspace's `[cloud.targets.NAME]` say where (tenant, kube context); with several,
the user picks one (`TargetPicker`). The promote itself is the worker's
(`promote_folder`), in a thread; each line it says becomes a notification and a line of
the loop's log.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.notifications import SeverityLevel

from aerogrid_devkit.tui.promote.target_picker import TargetPicker
from aerogrid_devkit.tui.promote.worker import promote_folder

if TYPE_CHECKING:
    from aerogrid_cloud.targets import CloudTarget
    from aerogrid_devkit.tui.app import AeroGridApp

__all__ = ["NO_TARGETS", "promote_app"]

#: Shown when the workspace names no cluster to promote to.
NO_TARGETS = (
    "No cloud target: add one to aerogrid.toml, e.g.\n"
    '[cloud.targets.prod]\ntenant = "my-team"\ncontext = "my-cluster"'
)


def promote_app(tui: AeroGridApp, name: str) -> None:
    """Promote an app to a cloud target (picked when the workspace has several)."""
    targets = tui.cloud_targets
    if not targets:
        tui.notify(NO_TARGETS, title=f"Promote {name}", severity="warning", timeout=8)
    elif len(targets) == 1:
        _promote_to(tui, name, next(iter(targets.values())))
    else:

        def chosen(target: str | None) -> None:
            if target is not None:
                _promote_to(tui, name, targets[target])

        tui.push_screen(TargetPicker(name, targets), chosen)


def _promote_to(tui: AeroGridApp, name: str, target: CloudTarget) -> None:
    folder = tui.devloop.supervisor.apps[name].path.parent

    def say(severity: str, line: str) -> None:
        tui.call_from_thread(_said, tui, name, severity, line)

    tui.run_worker(
        partial(promote_folder, name, folder, target, say),
        thread=True,
        group=f"promote-{name}",
        exclusive=True,
    )


def _said(tui: AeroGridApp, name: str, severity: str, line: str) -> None:
    tui.devloop.say(f"promote: {line}")
    level: SeverityLevel = "error" if severity == "error" else "information"
    if severity == "warning":
        level = "warning"
    tui.notify(line, title=f"Promote {name}", severity=level)
