"""`aerogrid excel manifest` through click's CliRunner (no Excel here: the manifest is
checked as XML, element by element, not sideloaded)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from aerogrid_devkit.excel_manifest import excel, template

ROOT = Path(__file__).resolve().parents[2]
NS = {
    "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
    "v": "http://schemas.microsoft.com/office/taskpaneappversionoverrides",
    "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(excel, ["manifest", *args])
    return result.exit_code, result.stdout, result.stderr


def manifest(*args: str) -> ET.Element:
    code, out, err = run(*args)
    assert code == 0, err
    return ET.fromstring(out.encode("utf-8"))


def urls(root: ET.Element) -> dict[str, str]:
    return {
        url.attrib["id"]: url.attrib["DefaultValue"]
        for url in root.iterfind(".//bt:Urls/bt:Url", NS)
    }


def text(root: ET.Element, path: str) -> str:
    found = root.find(path, NS)
    assert found is not None, path
    return found.text or ""


def test_the_packaged_template_is_the_one_in_excel_manifest() -> None:
    shipped = (ROOT / "devkit/src/aerogrid_devkit/templates/excel-manifest.xml").read_bytes()
    assert shipped == (ROOT / "excel/manifest/manifest.template.xml").read_bytes()
    assert template().encode("utf-8") == shipped


def test_a_local_endpoint_gives_a_shared_runtime_custom_functions_manifest() -> None:
    root = manifest("--endpoint", "http://localhost:50051")
    assert root.tag == f"{{{NS['o']}}}OfficeApp"
    assert root.attrib[XSI_TYPE] == "TaskPaneApp"
    # The data endpoint: an app domain, and the task pane's ?endpoint=.
    assert text(root, "o:AppDomains/o:AppDomain") == "http://localhost:50051"
    found = urls(root)
    bundle = "https://localhost:50051/addin/"
    assert found["Functions.Script.Url"] == bundle + "functions.js"
    assert found["Functions.Metadata.Url"] == bundle + "functions.json"
    taskpane = urlsplit(found["Taskpane.Url"])
    assert taskpane._replace(query="").geturl() == bundle + "taskpane.html"
    assert parse_qs(taskpane.query) == {"endpoint": ["http://localhost:50051"]}
    default = root.find("o:DefaultSettings/o:SourceLocation", NS)
    assert default is not None and default.attrib["DefaultValue"] == found["Taskpane.Url"]
    for image in root.iterfind(".//bt:Images/bt:Image", NS):
        assert image.attrib["DefaultValue"].startswith(bundle + "assets/")

    host = root.find("v:VersionOverrides/v:Hosts/v:Host", NS)
    assert host is not None and host.attrib[XSI_TYPE] == "Workbook"
    runtime = host.find("v:Runtimes/v:Runtime", NS)
    assert runtime is not None
    assert runtime.attrib == {"resid": "Taskpane.Url", "lifetime": "long"}
    point = host.find("v:AllFormFactors/v:ExtensionPoint", NS)
    assert point is not None and point.attrib[XSI_TYPE] == "CustomFunctions"
    parts = [child.tag.split("}")[1] for child in point]
    assert parts == ["Script", "Page", "Metadata", "Namespace"]
    resid = {}
    for part in ("Script", "Page", "Metadata"):
        location = point.find(f"v:{part}/v:SourceLocation", NS)
        assert location is not None, part
        resid[part] = location.attrib["resid"]
    assert resid == {
        "Script": "Functions.Script.Url",
        "Page": "Taskpane.Url",  # the shared runtime: the same page as the task pane's
        "Metadata": "Functions.Metadata.Url",
    }
    namespace = point.find("v:Namespace", NS)
    assert namespace is not None
    strings = {
        s.attrib["id"]: s.attrib["DefaultValue"]
        for s in root.iterfind(".//bt:ShortStrings/bt:String", NS)
    }
    assert strings[namespace.attrib["resid"]] == "AEROGRID"
    # A task pane button on the Home tab.
    tab = host.find("v:DesktopFormFactor/v:ExtensionPoint/v:OfficeTab", NS)
    assert tab is not None and tab.attrib["id"] == "TabHome"
    action = tab.find(".//v:Control/v:Action", NS)
    assert action is not None and action.attrib[XSI_TYPE] == "ShowTaskpane"

    sets = {
        s.attrib["Name"]: s.attrib["MinVersion"]
        for s in root.iterfind("o:Requirements/o:Sets/o:Set", NS)
    }
    assert sets == {"CustomFunctionsRuntime": "1.1", "SharedRuntime": "1.1"}


def test_the_top_level_elements_keep_the_schema_order() -> None:
    root = manifest("--endpoint", "https://grid.example.com")
    order = [child.tag.split("}")[1] for child in root]
    assert order == [
        "Id", "Version", "ProviderName", "DefaultLocale", "DisplayName", "Description",
        "IconUrl", "HighResolutionIconUrl", "SupportUrl", "AppDomains", "Hosts",
        "Requirements", "DefaultSettings", "Permissions", "VersionOverrides",
    ]  # fmt: skip


def test_the_id_is_stable_per_endpoint() -> None:
    first = text(manifest("--endpoint", "https://grid.example.com/tenant"), "o:Id")
    again = text(manifest("--endpoint", "https://GRID.example.com:443/tenant/"), "o:Id")
    other = text(manifest("--endpoint", "https://grid.example.com/other"), "o:Id")
    assert uuid.UUID(first).version == 5
    assert first == again
    assert first != other
    chosen = "12345678-1234-4234-8234-123456789abc"
    chosen_root = manifest("--endpoint", "https://grid.example.com", "--id", chosen)
    assert text(chosen_root, "o:Id") == chosen


def test_a_cloud_endpoint_and_a_chosen_bundle_are_escaped_for_xml(tmp_path: Path) -> None:
    out = tmp_path / "manifest.xml"
    code, _, err = run(
        "--endpoint", "https://grid.example.com/a&b",
        "--bundle-url", "https://cdn.example.com/x&y<z",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote {out}" in err
    raw = out.read_text(encoding="utf-8")
    assert "https://cdn.example.com/x&amp;y&lt;z/functions.json" in raw
    root = ET.fromstring(raw.encode("utf-8"))
    found = urls(root)
    assert found["Functions.Metadata.Url"] == "https://cdn.example.com/x&y<z/functions.json"
    assert parse_qs(urlsplit(found["Taskpane.Url"]).query) == {
        "endpoint": ["https://grid.example.com/a&b"]
    }
    assert text(root, "o:AppDomains/o:AppDomain") == "https://grid.example.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "ftp://grid.example.com"], "must be an http:// or https:// URL"),
        (["--endpoint", "https://me:secret@grid.example.com"], "has credentials in it"),
        (["--endpoint", "http://grid.example.com"], "http is allowed only for a local endpoint"),
        (["--endpoint", "https://grid.example.com?token=x"], "no query"),
        (["--endpoint", "https://:443"], "has no host"),
        (["--endpoint", "https://grid.example.com:99999"], "bad port"),
        (["--endpoint", "not a url"], "is not a URL"),
        (
            ["--endpoint", "http://localhost:50051", "--bundle-url", "http://localhost:3000/"],
            "--bundle-url 'http://localhost:3000/' must be https",
        ),
    ],
)
def test_a_bad_url_is_one_error_line(args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert code != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "secret" not in err
