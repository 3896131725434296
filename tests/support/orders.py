"""Orders for the example app, the grid they must make, and waiting for a server to show it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter

from aerogrid.client import GridClient


def orders(n: int, *, seed: int = 1, products: int = 7) -> list[tuple[bytes | None, bytes | None]]:
    rng = random.Random(seed)
    return [
        (
            f"order-{seed}-{i}".encode(),
            json.dumps(
                {"product": f"p{rng.randrange(products)}", "quantity": rng.randint(1, 9)}
            ).encode(),
        )
        for i in range(n)
    ]


def expected_sums(records: list[tuple[bytes | None, bytes | None]]) -> dict[str, dict[str, int]]:
    units: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for _, value in records:
        try:
            order = json.loads(value or b"")
        except ValueError:
            continue
        if (
            not isinstance(order, dict)
            or not isinstance(order.get("product"), str)
            or type(order.get("quantity")) is not int
            or order["quantity"] < 0
        ):
            continue
        units[order["product"]] += order["quantity"]
        count[order["product"]] += 1
    return {p: {"units_sold": units[p], "orders": count[p]} for p in units}


def units_sold(records: list[tuple[bytes | None, bytes | None]]) -> dict[str, dict[str, int]]:
    """The seed app's grid (examples/ordersapp: units sold per product) for `records`."""
    return {p: {"units_sold": row["units_sold"]} for p, row in expected_sums(records).items()}


async def converged(
    target: str, app: str, grid: str, expected: object, timeout: float = 30.0
) -> dict[str, dict[str, object]]:
    """Poll snapshots until the grid equals `expected` (or return the last one)."""
    deadline = time.monotonic() + timeout
    rows: dict[str, dict[str, object]] = {}
    async with GridClient(target) as client:
        while time.monotonic() < deadline:
            rows = await client.snapshot(app, grid)
            if rows == expected:
                return rows
            await asyncio.sleep(0.2)
    return rows
