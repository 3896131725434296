"""Regenerate docs/excel-harness.png: the add-in's =AEROGRID.GRID in harness.html, in Chromium.

    .venv/bin/python scripts/harness_screenshot.py [--out docs/excel-harness.png]

Runs what a developer runs, on throwaway ports: the embedded broker, an orders app under
the devkit's Supervisor, the LocalServer (which serves the add-in bundle at /addin/),
a fixed set of orders, then excel/test-live/harness_chromium.mjs with --screenshot once
the page shows the exact grid. Needs the built bundle (`cd excel && npm run build`, run
here when missing), excel/node_modules and Chromium (scripts/install_chromium.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from aerogrid_devkit.embedded import EmbeddedBroker, free_port, port_is_free
from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[1]
EXCEL = REPO / "excel"
HARNESS = EXCEL / "test-live" / "harness_chromium.mjs"
APP = "ordersapp"
TOPIC = "orders"

ORDERS_APP = """
import aerogrid

app = aerogrid.App({app!r})

class Order(aerogrid.Record):
    product: str
    quantity: int

orders_topic = app.topic({topic!r}, key_type=str, value_type=Order, partitions=1)
product_sum = app.Grid('product_sum', columns=['units_sold', 'orders'],
                       default=lambda: {{'units_sold': 0, 'orders': 0}})

@app.stream(orders_topic)
async def sum_orders(orders):
    async for order_id, order in orders.items():
        row = product_sum[order.product]
        product_sum[order.product] = {{'units_sold': row['units_sold'] + order.quantity,
                                      'orders': row['orders'] + 1}}
"""

#: product -> the quantities of its orders (a café's morning, fixed so the picture is stable)
ORDERS: dict[str, list[int]] = {
    "cappuccino": [2, 1, 3, 1, 1, 2, 4, 1],
    "croissant": [3, 2, 1, 6, 2],
    "espresso": [1, 1, 2, 1, 1, 1, 3, 1, 1, 2, 1],
    "green tea": [2, 1, 1],
    "muffin": [1, 4, 2, 2],
    "orange juice": [1, 2, 1, 1, 1, 3],
}


def expected_grid() -> list[list[str | int]]:
    rows: list[list[str | int]] = [["key", "units_sold", "orders"]]
    for product in sorted(ORDERS):
        rows.append([product, sum(ORDERS[product]), len(ORDERS[product])])
    return rows


async def produce(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        number = 0
        for product, quantities in ORDERS.items():
            for quantity in quantities:
                number += 1
                value = json.dumps({"product": product, "quantity": quantity}).encode()
                await producer.send_and_wait(TOPIC, key=f"order-{number:04d}".encode(), value=value)
    finally:
        await producer.stop()


def ensure_bundle() -> Path:
    bundle = EXCEL / "dist" / "addin"
    if not (bundle / "harness.html").is_file():
        npm = shutil.which("npm") or sys.exit("harness_screenshot: npm is needed to build excel/")
        subprocess.run([npm, "run", "build"], cwd=EXCEL, check=True)
    return bundle


async def wait_running(supervisor: Supervisor, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while supervisor.apps[APP].status != "running":
        if time.monotonic() > deadline:
            logs = "\n".join(list(supervisor.apps[APP].logs)[-30:])
            raise RuntimeError(f"the orders app did not start:\n{logs}")
        await asyncio.sleep(0.1)


async def shoot(out: Path, chromium: str | None) -> int:
    os.environ["AEROGRID_ADDIN_DIR"] = str(ensure_bundle())
    with tempfile.TemporaryDirectory(prefix="aerogrid-shot-") as tmp:
        app_file = Path(tmp) / APP / "app.py"
        app_file.parent.mkdir()
        app_file.write_text(ORDERS_APP.format(app=APP, topic=TOPIC))
        with EmbeddedBroker(port=free_port(), log_file=Path(tmp) / "broker.log") as broker:
            supervisor = Supervisor({APP: app_file}, broker.bootstrap)
            # The usual port when free, so the picture shows what a developer sees.
            port = 50051 if port_is_free(50051) else 0
            endpoint = LocalServer(supervisor, port=port, tls=False)
            await endpoint.start()
            try:
                await supervisor.start()
                try:
                    await wait_running(supervisor)
                    await produce(broker.bootstrap)
                    page = (
                        f"http://localhost:{endpoint.port}/addin/harness.html"
                        f"?app={APP}&grid=product_sum&options=interval%3D100"
                    )
                    out.parent.mkdir(parents=True, exist_ok=True)
                    args = [
                        "node",
                        str(HARNESS),
                        page,
                        "--expect",
                        json.dumps(expected_grid()),
                        "--duration",
                        "60",
                        "--screenshot",
                        str(out),
                        "--viewport",
                        "900x420",
                        *(["--chromium", chromium] if chromium else []),
                    ]
                    done = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE)
                    stdout, _ = await done.communicate()
                finally:
                    await supervisor.stop()
            finally:
                await endpoint.stop()
    result = json.loads(stdout.decode().strip().splitlines()[-1] or "{}")
    if done.returncode != 0:
        print(f"harness_screenshot: the page did not show the grid: {result}", file=sys.stderr)
        return 1
    print(f"harness_screenshot: wrote {out} ({result['results']} results, {result['elapsed_s']} s)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "excel-harness.png")
    parser.add_argument("--chromium", help="the Chromium binary (default: /usr/bin/chromium)")
    args = parser.parse_args()
    return asyncio.run(shoot(args.out.resolve(), args.chromium))


if __name__ == "__main__":
    sys.exit(main())
