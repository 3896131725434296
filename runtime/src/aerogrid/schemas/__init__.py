"""Company Kafka formats: records in the Confluent wire format with schemas in a registry.

`registry` is the client, `wire` the framing, `subjects` the naming strategies,
`codec` the protocol every format's codec implements (`avro`, `protobuf`,
`json_schema`) and the factory the SDK calls.
"""
