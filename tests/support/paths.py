"""Where things are in the checkout, for tests at any depth below tests/."""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: The repository's root folder.
REPO: Final = Path(__file__).resolve().parents[2]
