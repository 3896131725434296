"""Each client against each local broker: what it does must be what the table says.

A cell that changes (a client that starts working on the embedded broker, or stops working
anywhere) fails here with the way to refresh the table, so the README never says something
the suite did not see.
"""

from __future__ import annotations

import pytest

from compat.clients import BROKERS, CLIENTS, BrokerUnderTest, Client, observe
from compat.conftest import refreshing
from compat.table import REFRESH, Table
from support.brokers import Broker
from support.ci import unavailable


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name.replace(" ", "-"))
@pytest.mark.parametrize("broker", BROKERS, ids=lambda b: b.column.key)
def test_client_against_broker(
    broker: BrokerUnderTest,
    client: Client,
    request: pytest.FixtureRequest,
    committed: Table,
    observed: Table,
    unique_name: str,
) -> None:
    reason = client.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    running: Broker = request.getfixturevalue(broker.fixture)
    outcome = observe(client, running.bootstrap, unique_name)
    observed.results.setdefault(broker.column.key, {})[client.name] = outcome
    if refreshing():
        return
    expected = committed.results.get(broker.column.key, {}).get(client.name)
    assert outcome == expected, (
        f"{client.title()} against {broker.column.title}: the table says "
        f"{expected.cell() if expected else 'nothing'}, the suite saw {outcome.cell()}; {REFRESH}"
    )
