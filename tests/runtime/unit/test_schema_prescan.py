"""The engine's pre-scan for writer schema ids (`SchemaLoader.needed`) asks a codec once per
run of equal headers: it must still find exactly what asking for every record finds."""

from __future__ import annotations

import json
import random

import aerogrid
from aerogrid.engine.processor import RawRecord
from aerogrid.engine.schema_loading import SchemaLoader
from aerogrid.schemas.codec import RegistryCodec
from aerogrid.schemas.registry import RegisteredSchema
from aerogrid.schemas.registry_settings import RegistrySettings
from aerogrid.schemas.wire import frame

ORDER_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "product", "type": "string"}, {"name": "quantity", "type": "long"}],
    }
)


class Order(aerogrid.Record):
    product: str
    quantity: int


class Key(aerogrid.Record):
    product: str


class OneSchemaRegistry:
    """A registry holding one Avro schema under every id (what `load` asks of it)."""

    settings = RegistrySettings(url="http://127.0.0.1:9/apis/ccompat/v7")

    async def schema_by_id(self, schema_id: int) -> RegisteredSchema:
        return RegisteredSchema(schema_id, "AVRO", ORDER_SCHEMA)

    async def with_references(self, registered: RegisteredSchema) -> RegisteredSchema:
        return registered

    async def aclose(self) -> None:
        pass


def every_record_asked(
    loader: SchemaLoader, records: list[RawRecord]
) -> set[tuple[RegistryCodec, int]]:
    """What `needed` must find: each codec asked about every record."""
    found: set[tuple[RegistryCodec, int]] = set()
    for record in records:
        key_codec, value_codec = loader._codecs.get(record.topic, (None, None))
        for codec, data in ((key_codec, record.key), (value_codec, record.value)):
            schema_id = None if codec is None else codec.schema_id_to_load(data)
            if codec is not None and schema_id is not None:
                found.add((codec, schema_id))
    return found


async def test_the_prescan_finds_what_asking_every_record_finds() -> None:
    app = aerogrid.App("prescan")
    app.topic("orders", value_type=Order, format="avro")
    app.topic("refunds", key_type=Key, key_format="avro", value_type=Order, format="avro")
    app.topic("plain", value_type=Order)
    loader = SchemaLoader(app.name, OneSchemaRegistry(), app.registry_topics())  # type: ignore[arg-type]
    refunds_key = app.topics["refunds"].registry_codecs[0]
    assert refunds_key is not None
    await refunds_key.load(1)  # held by the key codec only
    # Same header on other codecs and sides, runs of one header, tombstones, bad frames.
    values = [frame(1, b"\x02a\x02"), frame(2, b"\x02a\x02"), frame(3, b""), None]
    values += [b"\x00\x00", b"{}", b"\x00\x00\x00\x00\x01 but longer"]
    chooser = random.Random(16)
    for _ in range(40):
        records = [
            RawRecord(
                chooser.choice(["orders", "refunds", "plain", "unknown"]),
                0,
                offset,
                chooser.choice(values),
                chooser.choice(values),
            )
            for offset in range(chooser.randint(1, 30))
        ]
        needed = loader.needed(records)
        assert len(needed) == len(set(needed))
        assert set(needed) == every_record_asked(loader, records)


async def test_a_header_seen_on_one_codec_is_asked_again_on_another() -> None:
    app = aerogrid.App("prescan-two")
    orders = app.topic("orders", value_type=Order, format="avro")
    refunds = app.topic("refunds", key_type=Key, key_format="avro", value_type=Order, format="avro")
    loader = SchemaLoader(app.name, OneSchemaRegistry(), app.registry_topics())  # type: ignore[arg-type]
    data = frame(5, b"\x02a\x02")
    records = [
        RawRecord("orders", 0, 0, None, data),
        RawRecord("refunds", 0, 0, data, data),
        RawRecord("orders", 0, 1, None, data),
    ]
    codecs = [orders.registry_codecs[1], refunds.registry_codecs[0], refunds.registry_codecs[1]]
    assert sorted(id(codec) for codec, _ in loader.needed(records)) == sorted(map(id, codecs))
    assert {schema_id for _, schema_id in loader.needed(records)} == {5}
