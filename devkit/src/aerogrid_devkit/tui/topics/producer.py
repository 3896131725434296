"""The producer form: one message (topic, key, value, headers) checked, then sent.

Nothing is sent unless the whole form is valid: a header line that is not NAME=VALUE, or
a value that is not JSON when JSON was asked for, is shown inline and the form stays
open; so is a broker that cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Static, TextArea

from aerogrid_devkit import kafka_tools
from aerogrid_devkit.tui.screens.section import describe_error

if TYPE_CHECKING:
    from aerogrid_devkit.tui.app import AeroGridApp

SEND_TIMEOUT = 15.0


class FormError(ValueError):
    """What is wrong with the form, in words for the user."""


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def parse_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    """NAME=VALUE lines (blank lines skipped; the value may contain '=' and be empty)."""
    headers = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise FormError(f"header line {number} is not NAME=VALUE: {line.strip()!r}")
        headers.append((name.strip(), value.encode()))
    return tuple(headers)


def build_message(
    topic: str, key: str, value: str, headers: str, *, must_be_json: bool
) -> OutgoingMessage:
    """The message the form describes, or FormError saying what to fix."""
    topic = topic.strip()
    if not topic:
        raise FormError("a topic is needed")
    if must_be_json:
        try:
            json.loads(value)
        except json.JSONDecodeError as exc:
            raise FormError(
                f"the value is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
    return OutgoingMessage(
        topic=topic,
        key=key.encode() if key else None,
        value=value.encode(),
        headers=parse_headers(headers),
    )


class ProducerForm(ModalScreen[tuple[int, int] | None]):
    """Dismisses with (partition, offset) once the broker acknowledged the message."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "send", "Send", priority=True, tooltip="Send (once the form is valid)"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, topic: str = "") -> None:
        super().__init__()
        self._topic = topic
        self.sending = False

    @property
    def aero(self) -> AeroGridApp:
        return cast("AeroGridApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog producer"):
            yield Static("Produce a message", classes="dialog-title")
            with Horizontal(classes="field"):
                yield Label("Topic", classes="field-label")
                yield Input(self._topic, placeholder="orders", id="topic", compact=True)
            with Horizontal(classes="field"):
                yield Label("Key", classes="field-label")
                yield Input(placeholder="(none)", id="key", compact=True)
            yield Label("Value")
            yield TextArea(id="value", classes="value-editor", compact=True)
            yield Label("Headers, one NAME=VALUE a line")
            yield TextArea(id="headers", classes="headers-editor", compact=True)
            yield Checkbox("value must be JSON", value=True, id="json", compact=True)
            yield Static(classes="error")
            yield Static(
                Text.from_markup("[b]ctrl+s[/b] send   [b]tab[/b] next field   [b]esc[/b] cancel"),
                classes="dialog-detail",
            )

    def on_mount(self) -> None:
        self.query_one(".error", Static).display = False
        self.query_one("#key" if self._topic else "#topic", Input).focus()

    def show_error(self, message: str) -> None:
        error = self.query_one(".error", Static)
        error.update(Text(message, style="bold red"))
        error.display = bool(message)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_send(self) -> None:
        if self.sending:
            return
        try:
            message = build_message(
                self.query_one("#topic", Input).value,
                self.query_one("#key", Input).value,
                self.query_one("#value", TextArea).text,
                self.query_one("#headers", TextArea).text,
                must_be_json=self.query_one("#json", Checkbox).value,
            )
        except FormError as exc:
            self.show_error(str(exc))
            return
        self.sending = True
        self.show_error("")
        self.run_worker(self._send(message), group="produce", exclusive=True)

    async def _send(self, message: OutgoingMessage) -> None:
        try:
            settings = await asyncio.to_thread(self.aero.broker.settings)
            sent = await asyncio.wait_for(
                kafka_tools.produce(
                    settings,
                    message.topic,
                    [message.value],
                    key=message.key,
                    headers=message.headers,
                ),
                SEND_TIMEOUT,
            )
        except Exception as exc:  # the broker's refusal, shown as it said it
            self.sending = False
            self.show_error(f"could not send to {message.topic}: {describe_error(exc)}")
            return
        partition, offset = sent[0]
        self.notify(f"sent to {message.topic} partition {partition} at offset {offset}")
        self.dismiss((partition, offset))
