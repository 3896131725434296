"""Build the images (scripts/build_images.sh) before any test that needs them starts.

Done at the end of collection, as tests/cloud/conftest.py does for the Kubernetes binaries:
a cold build takes minutes, more than a test's timeout. `make test` has built them already
(`make images`), which makes this a 0.2 s no-op. A failure is kept for the `images` fixture.
"""

from __future__ import annotations

import pytest

from support.ci import unavailable
from support.images import BuiltImage, ImagesBuildError, ImagesUnavailable, built_images

_build_error: list[Exception] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any("images" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    try:
        built_images()
    except (ImagesUnavailable, ImagesBuildError) as exc:
        _build_error.append(exc)


@pytest.fixture(scope="session")
def images() -> dict[str, BuiltImage]:
    """The built images (aerogrid-runtime, -platform, -builder) by name."""
    if _build_error:
        error = _build_error[0]
        if isinstance(error, ImagesUnavailable):
            unavailable(str(error))
        raise error
    try:
        return built_images()
    except ImagesUnavailable as exc:
        unavailable(str(exc))
        raise
