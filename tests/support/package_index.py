"""A PEP 503 package index for the test bed: one real wheel, served over plain HTTP.

The build Job's pip (on the runtime image, in a pod) installs an app's requirements from
`PlatformSettings.package_index`; in the test bed that is this index, bound to an address
the pods reach (the node's IP), so a build needs nothing beyond the machine. The one wheel
is a small pure-Python package with no dependencies (`tabulate`, which the runtime image
does not hold), fetched once from PyPI into ``~/.cache/aerogrid/wheels/`` (``AEROGRID_CACHE``
moves the root) and checked against its pinned sha256.

    with PackageIndex("10.200.0.1") as index:
        settings = settings.model_copy(update={"package_index": index.url})
        ...  # requirements.txt: index.requirement; then `import tabulate` in the image
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import html
import os
import re
import shutil
import tempfile
import urllib.request
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Final, Self

from support.http_thread import HttpThread, QuietLog
from support.lifecycle import Started

__all__ = ["MODULE", "PROJECT", "VERSION", "PackageIndex", "cached_wheel"]

PROJECT: Final = "tabulate"
VERSION: Final = "0.9.0"
#: What the wheel's code is imported as.
MODULE: Final = "tabulate"
WHEEL: Final = f"{PROJECT}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256: Final = "024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f"
#: Where the wheel is fetched from (its link is read from PyPI's own simple index).
UPSTREAM: Final = f"https://pypi.org/simple/{PROJECT}/"


def _cache_dir() -> Path:
    root = os.environ.get("AEROGRID_CACHE") or str(Path.home() / ".cache" / "aerogrid")
    return Path(root) / "wheels"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def cached_wheel() -> Path:
    """The wheel in the cache, fetched (under a lock) the first time; hash checked."""
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / WHEEL
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if wheel.exists() and _sha256(wheel) == WHEEL_SHA256:
            return wheel
        with urllib.request.urlopen(UPSTREAM, timeout=60) as answer:
            page = answer.read().decode()
        link = re.search(rf'href="([^"]*/{re.escape(WHEEL)})(#[^"]*)?"', page)
        if link is None:
            raise RuntimeError(f"{UPSTREAM} does not list {WHEEL}")
        partial = wheel.with_suffix(".part")
        with urllib.request.urlopen(html.unescape(link.group(1)), timeout=120) as answer:
            partial.write_bytes(answer.read())
        if (got := _sha256(partial)) != WHEEL_SHA256:
            partial.unlink()
            raise RuntimeError(f"{WHEEL} from PyPI has sha256 {got}, expected {WHEEL_SHA256}")
        partial.replace(wheel)
        return wheel


class _Quiet(QuietLog, SimpleHTTPRequestHandler):
    pass


class PackageIndex(Started):
    """The index at ``http://<host>:<port>/simple/``, from `start()` (or `with`) to `stop()`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requirement = f"{PROJECT}=={VERSION}"
        self._root: Path | None = None
        self._http: HttpThread | None = None

    @property
    def url(self) -> str:
        """pip's --index-url (PlatformSettings.package_index)."""
        if self._http is None:
            raise RuntimeError("the package index is not running")
        return f"{self._http.base_url}/simple/"

    def start(self) -> Self:
        """Lay out the index in a temporary folder and serve it (the wheel fetched once)."""
        wheel = cached_wheel()
        self._root = root = Path(tempfile.mkdtemp(prefix="aerogrid-index-"))
        try:
            # PEP 503: /simple/ lists projects, /simple/<project>/ its files with their hash.
            (root / "files").mkdir()
            shutil.copyfile(wheel, root / "files" / WHEEL)
            project = root / "simple" / PROJECT
            project.mkdir(parents=True)
            (root / "simple" / "index.html").write_text(
                f'<!DOCTYPE html><html><body><a href="{PROJECT}/">{PROJECT}</a></body></html>\n'
            )
            (project / "index.html").write_text(
                "<!DOCTYPE html><html><body>"
                f'<a href="../../files/{WHEEL}#sha256={WHEEL_SHA256}">{WHEEL}</a>'
                "</body></html>\n"
            )
            handler = functools.partial(_Quiet, directory=str(root))
            self._http = HttpThread(self.host, handler, "package-index")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the folder; `url` raises until the next `start()`."""
        if self._http is not None:
            self._http.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._http = self._root = None
