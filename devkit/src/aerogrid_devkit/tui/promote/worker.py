"""The promote worker: the same client as `aerogrid promote`, each step said as it comes.

It runs in a worker thread, on an event loop of its own (so a slow cluster never holds up
the TUI's), and reports each phase of the App's status through `say`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aerogrid_cloud.targets import CloudTarget

__all__ = ["Say", "promote_folder"]

#: How the worker reports a step: say(severity, line), severity "information",
#: "warning" or "error".
Say = Callable[[str, str], None]


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
