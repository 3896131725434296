"""The embedded mode: tansu left running in the background (see `aerogrid_devkit.embedded`).

No Docker, no JVM; it starts in about a second and keeps its data in memory.
"""

from __future__ import annotations

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded
from aerogrid_devkit.brokers.base import DEFAULT_PORT, HOST, BrokerError, BrokerStatus, check_kafka

__all__ = ["EmbeddedMode"]


class EmbeddedMode:
    """The embedded broker (tansu) left running in the background, as `embedded.up` does."""

    mode = "embedded"
    #: Why this mode was chosen (set by `open_broker`; shown by the TUI).
    chosen_because = ""

    def __init__(self, port: int | None = None) -> None:
        #: None: 9092 when free, else any free port; 0: any free port.
        self.port = port

    @property
    def uri(self) -> str:
        state = embedded.read_state()
        if state is not None:
            return state.bootstrap
        return f"{HOST}:{self.port or DEFAULT_PORT}"

    def up(self) -> BrokerStatus:
        try:
            state, started = embedded.up(self.port)
        except embedded.EmbeddedBrokerError as exc:
            raise BrokerError(f"embedded broker: {exc}") from None
        verb = "started" if started else "already running"
        return BrokerStatus(
            self.mode,
            True,
            state.bootstrap,
            f"embedded broker {verb} on {state.bootstrap} (pid {state.pid}, in memory)",
        )

    def down(self, *, purge: bool = False) -> BrokerStatus:
        try:
            state = embedded.down()
        except embedded.EmbeddedBrokerError as exc:
            raise BrokerError(f"embedded broker: {exc}") from None
        if state is None:
            return BrokerStatus(self.mode, False, None, "no broker running (embedded)")
        return BrokerStatus(
            self.mode,
            False,
            None,
            f"stopped the embedded broker on {state.bootstrap} (its topics are gone: "
            "it keeps them in memory)",
        )

    def status(self) -> BrokerStatus:
        state = embedded.read_state()
        if state is None:
            return BrokerStatus(
                self.mode, False, None, "no broker running (start one with: aerogrid broker up)"
            )
        reach = check_kafka(BrokerSettings.parse(state.bootstrap))
        if not reach.ok:
            return BrokerStatus(
                self.mode,
                False,
                state.bootstrap,
                f"the embedded broker (pid {state.pid}) runs but does not answer: {reach.cause}",
            )
        return BrokerStatus(
            self.mode,
            True,
            state.bootstrap,
            f"embedded broker up on {state.bootstrap} (pid {state.pid}, in memory); "
            f"log {state.log}",
        )

    def settings(self) -> BrokerSettings:
        return BrokerSettings.parse(self.uri)

    def app_env(self) -> dict[str, str]:
        return {"AEROGRID_BROKER": self.uri}
