"""Load a user's app file and find its App, with errors that point at file and line."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from aerogrid.app import App
from aerogrid.errors import AppLoadError


def load_app(path: str | Path) -> App:
    """Import `path` as a module and return the one App it declares."""
    file = Path(path).resolve()
    if not file.is_file():
        raise AppLoadError(f"{path}: no such app file")
    module_name = f"aerogrid_app_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        where = f"{exc.filename or file}:{exc.lineno or '?'}"
        if exc.offset:
            where += f":{exc.offset}"
        line = (exc.text or "").rstrip()
        raise AppLoadError(
            f"{where}: SyntaxError: {exc.msg}" + (f"\n    {line.strip()}" if line else "")
        ) from None
    except Exception as exc:
        raise AppLoadError(_describe_import_failure(file, exc)) from None
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if not apps:
        raise AppLoadError(
            f"{file}:1: no aerogrid.App in this file (declare one: app = aerogrid.App('name'))"
        )
    if len(apps) > 1:
        names = ", ".join(a.name for a in apps)
        raise AppLoadError(f"{file}:1: more than one aerogrid.App in this file ({names})")
    app = apps[0]
    if not app.streams and not app.timers and not app.tasks:
        raise AppLoadError(
            f"{file}:1: app {app.name!r} has no @app.stream, @app.timer or @app.task: "
            "it would never do anything"
        )
    return app


def _describe_import_failure(file: Path, exc: Exception) -> str:
    """`file:line: ErrorType: message`, at the deepest frame inside the app's folder."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if Path(f.filename).resolve().parent == file.parent]
    frame = inside[-1] if inside else (frames[-1] if frames else None)
    where = f"{frame.filename}:{frame.lineno}" if frame else str(file)
    text = f"{where}: {type(exc).__name__}: {exc}"
    if frame and frame.line:
        text += f"\n    {frame.line.strip()}"
    return text
