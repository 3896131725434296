"""Which line of a failed build step's termination message an App's status carries."""

from __future__ import annotations

from aerogrid_cloud.operator.builds import error_line


def test_pips_first_error_line_is_the_reason() -> None:
    pip = (
        "ERROR: Could not find a version that satisfies the requirement nosuch==1.0"
        " (from versions: none)\n"
        "ERROR: No matching distribution found for nosuch==1.0\n"
    )
    assert error_line(pip) == (
        "ERROR: Could not find a version that satisfies the requirement nosuch==1.0"
        " (from versions: none)"
    )


def test_buildahs_error_line_comes_after_its_progress() -> None:
    buildah = (
        "STEP 1/3: FROM 10.0.0.1:5000/aerogrid-runtime:0.1.0\n"
        "Trying to pull 10.0.0.1:5000/aerogrid-runtime:0.1.0...\n"
        "Error: creating build container: initializing source docker://10.0.0.1:5000/x: "
        'pinging container registry 10.0.0.1:5000: Get "https://10.0.0.1:5000/v2/": '
        "http: server gave HTTP response to HTTPS client\n"
    )
    assert error_line(buildah).startswith("Error: creating build container: ")
    assert error_line(buildah).endswith("server gave HTTP response to HTTPS client")


def test_without_an_error_line_the_last_line_and_a_bound() -> None:
    assert error_line("step one\nKilled\n\n") == "Killed"
    assert error_line("") == ""
    assert len(error_line("ERROR: " + "x" * 5000)) == 1000
