"""Which guarantee an app runs with, chosen from what the broker definitely answers.

Exactly-once needs a transactional producer, and starting one asks the broker's
transaction coordinator for a producer id. A slow coordinator (Apache Kafka creating
`__transaction_state` on its first use, a leader election, a busy machine) is not a
broker without transactions: aiokafka retries those answers on its own, so this
module waits for as long as it takes and reports the wait. Only a definite refusal
(an error the broker returned, or an API it does not have) ends the attempt, and only
with `--exactly-once auto` does that downgrade to checkpoints, stated in the logs,
`/readyz`, the metrics and the app's status message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TransactionalIdAuthorizationFailed,
)

from aerogrid.backoff import Backoff
from aerogrid.engine.connectivity import diagnose_connection
from aerogrid.errors import AeroGridError
from aerogrid.limits import MAX_MESSAGE_BYTES
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")

ExactlyOnce = Literal["auto", "on", "off"]

#: Every app producer: acknowledged by all in-sync replicas, and the one message limit the
#: dead letters and the changelog rows are cut and checked against.
_PRODUCER_OPTIONS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 2,
    "max_request_size": MAX_MESSAGE_BYTES,
}

#: How often a start that waits on the transaction coordinator says so.
WAIT_REPORT_SECONDS = 15.0


class Guarantee(StrEnum):
    #: Kafka transactions: grids, dead letters and sent records, all exactly once.
    EXACTLY_ONCE = "exactly-once"
    #: Checkpoints: grids exactly once; dead letters and sent records at least once.
    CHECKPOINTED = "checkpointed"


@dataclass(frozen=True)
class ChosenProducer:
    producer: AIOKafkaProducer
    guarantee: Guarantee
    #: Why exactly-once is not in use although `auto` asked for it (None: not downgraded).
    downgrade_reason: str | None = None


class TransactionsRefused(AeroGridError):
    """The broker answered a transactional producer with a definite refusal."""


def _definite(exc: BaseException) -> bool:
    """An answer that will not change on retry: the broker has no usable transactions."""
    if isinstance(exc, KafkaConnectionError | asyncio.TimeoutError):
        return False
    if isinstance(exc, KafkaError):
        return not exc.retriable
    return False


async def choose_producer(
    app_name: str,
    settings: BrokerSettings,
    mode: ExactlyOnce,
    *,
    on_wait: Callable[[str], None] = lambda message: None,
    transactional_id: str | None = None,
) -> ChosenProducer:
    """Start the app's producer: transactional when the broker has transactions.

    `transactional_id` (default: the app's name, which fences the app's previous producer)
    lets a replica probe for transactions without fencing the active.

    Waits (reporting through `on_wait` and the log) while the coordinator is slow;
    cancel the call to give up. Raises BrokerConnectionError when no broker answers,
    and TransactionsRefused when `mode` is "on" and the broker refuses.
    """
    if mode == "off":
        return ChosenProducer(await _start_plain(settings), Guarantee.CHECKPOINTED)
    backoff = Backoff(initial=0.5, maximum=10.0)
    while True:
        producer = AIOKafkaProducer(
            transactional_id=transactional_id or app_name,
            **_PRODUCER_OPTIONS,
            **settings.client_options(),
        )
        try:
            await _start_reporting(producer, settings, on_wait)
        except KafkaConnectionError as exc:
            # No broker reached at all (down, credentials refused, TLS failed): not a
            # broker without transactions.
            await _stop_quietly(producer)
            raise await diagnose_connection(settings) from exc
        except (TransactionalIdAuthorizationFailed, GroupAuthorizationFailedError) as exc:
            # The broker has transactions; this principal may not use them. Downgrading
            # would hide a configuration mistake behind a weaker guarantee.
            await _stop_quietly(producer)
            raise TransactionsRefused(
                f"the broker at {settings.bootstrap} refused transactional id {app_name!r} "
                f"({type(exc).__name__}): grant it the transactional-id ACL, or run with "
                "--exactly-once off to use checkpoints"
            ) from exc
        except Exception as exc:
            await _stop_quietly(producer)
            if not _definite(exc):
                delay = backoff.next_delay()
                message = (
                    f"the transaction coordinator at {settings.bootstrap} did not answer "
                    f"({type(exc).__name__}: {exc}); retrying in {delay:.1f} s"
                )
                log.warning("%s", message)
                on_wait(message)
                await asyncio.sleep(delay)
                continue
            reason = f"the broker refused a transactional producer ({type(exc).__name__}: {exc})"
            if mode == "on":
                raise TransactionsRefused(
                    f"{reason}; exactly-once (--exactly-once on) needs Kafka transactions"
                ) from exc
            log.warning(
                "broker at %s: %s; using checkpoints (grids exactly once, dead letters and "
                "sent records at least once)",
                settings.bootstrap,
                reason,
            )
            return ChosenProducer(await _start_plain(settings), Guarantee.CHECKPOINTED, reason)
        return ChosenProducer(producer, Guarantee.EXACTLY_ONCE)


async def _start_reporting(
    producer: AIOKafkaProducer, settings: BrokerSettings, on_wait: Callable[[str], None]
) -> None:
    """`producer.start()`, saying every WAIT_REPORT_SECONDS that it still waits."""
    started = time.monotonic()
    task = asyncio.ensure_future(producer.start())
    try:
        while True:
            done, _ = await asyncio.wait((task,), timeout=WAIT_REPORT_SECONDS)
            if done:
                task.result()
                return
            message = (
                f"waiting {time.monotonic() - started:.0f} s for the transaction coordinator "
                f"at {settings.bootstrap} (exactly-once needs it; still trying)"
            )
            log.warning("%s", message)
            on_wait(message)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _start_plain(settings: BrokerSettings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(**_PRODUCER_OPTIONS, **settings.client_options())
    try:
        await producer.start()
    except BaseException as exc:
        await _stop_quietly(producer)
        if isinstance(exc, KafkaConnectionError):
            raise await diagnose_connection(settings) from exc
        raise
    return producer


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 5)
