"""AeroGrid: write a small async app that turns Kafka topics into live grids.

import aerogrid

app = aerogrid.App('ordersapp', broker='localhost:9092')

class Order(aerogrid.Record):
    product: str
    quantity: int

orders = app.topic('orders', key_type=str, value_type=Order)
product_sum = app.Grid('product_sum', columns=['units_sold'],
                       default=lambda: {'units_sold': 0})

@app.stream(orders)
async def sum_orders(stream):
    async for order_id, order in stream.items():
        row = product_sum[order.product]
        product_sum[order.product] = {'units_sold': row['units_sold'] + order.quantity}
"""

from aerogrid.app import App
from aerogrid.errors import AeroGridError, AppLoadError, ConfigurationError, DecodeError, GridError
from aerogrid.grids import Grid
from aerogrid.records import Record
from aerogrid.settings import BrokerSettings
from aerogrid.streams import Event, StreamInput
from aerogrid.topics import Topic

__version__ = "0.1.0"

__all__ = [
    "AeroGridError",
    "App",
    "AppLoadError",
    "BrokerSettings",
    "ConfigurationError",
    "DecodeError",
    "Event",
    "Grid",
    "GridError",
    "Record",
    "StreamInput",
    "Topic",
    "__version__",
]
