"""What an app sends goes to the outbox bound to the running task, not to its `App`:
a topic does not know its app, and the SDK's modules import one another in one
direction only."""

from __future__ import annotations

import ast
import asyncio

import pytest

import aerogrid
from aerogrid.streams import StreamInput
from aerogrid.testing import AppTester
from aerogrid.topics import Outbox
from support.paths import REPO

RUNTIME = REPO / "runtime/src"
SDK = ("aerogrid.app", "aerogrid.grids", "aerogrid.streams", "aerogrid.testing", "aerogrid.topics")


async def test_send_outside_a_running_app_says_where_it_works() -> None:
    app = aerogrid.App("lonely", broker="localhost:1")
    out = app.topic("out")
    with pytest.raises(RuntimeError, match=r"topic 'out': send\(\) works only in the app's"):
        await out.send("k", {"v": 1})


async def test_an_outbox_collects_what_its_task_and_the_tasks_it_starts_send() -> None:
    out = aerogrid.App("a", broker="localhost:1").topic("out", value_type=bytes)
    outbox, other = Outbox(), Outbox()
    with outbox.bound():
        await out.send("1", b"x")
        with other.bound():
            await out.send("2", b"y")
        await asyncio.create_task(out.send("3", b"z"))  # a new task inherits the binding
    assert [r.key for r in outbox.drain()] == [b"1", b"3"]
    assert [r.key for r in other.drain()] == [b"2"]
    assert outbox.drain() == [] and len(outbox) == 0
    with pytest.raises(RuntimeError):
        await out.send("4", b"w")  # unbound again


async def test_streams_timers_tasks_and_their_child_tasks_send_to_the_app() -> None:
    app = aerogrid.App("relay", broker="localhost:1")
    source = app.topic("in", key_type=str, value_type=bytes)
    sink = app.topic("out", key_type=str, value_type=bytes)

    @app.stream(source)
    async def relay(stream: StreamInput) -> None:
        async for key, value in stream.items():
            await sink.send(key, value)
            await asyncio.create_task(sink.send(f"{key}-child", value))

    @app.timer(60)
    async def tick() -> None:
        await sink.send("tick", b"")

    @app.task
    async def hello() -> None:
        await sink.send("hello", b"")

    async with AppTester(app) as tester:
        await tester.send_many(source, [("a", b"1"), ("b", b"2")])
        await tester.run_timer("tick")
        await tester.run_task("hello")
    assert [r.key for r in tester.sent] == [b"a", b"a-child", b"b", b"b-child", b"tick", b"hello"]
    assert tester.dead_letters == []
    assert not hasattr(source, "app")


def module_imports(name: str) -> set[str]:
    """The aerogrid modules `name` imports when loaded or type-checked (not in functions)."""
    path = RUNTIME / (name.replace(".", "/") + ".py")
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return {m for m in found if (RUNTIME / (m.replace(".", "/") + ".py")).exists()}


def test_the_sdk_modules_import_each_other_in_one_direction() -> None:
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for module in module_imports(start) - seen:
            seen.add(module)
            if module == goal or reaches(module, goal, seen):
                return True
        return False

    cycles = [m for m in SDK if reaches(m, m, set())]
    assert not cycles, f"SDK modules in an import cycle: {cycles}"
