"""Company Kafka formats: records in the Confluent wire format with schemas in a registry.

`registry` is the client (`registry_http` its requests and their errors, `errors` what
each failure means, `registry_settings` where the registry is), `wire` the framing,
`subjects` the naming strategies, `codec` the protocol every format's codec implements
and the factory the SDK calls, `codec_base` what the three codecs do alike; the formats:
`avro` (`avro_schema` derives a Record's schema, `avro_logical` picks the logical types
it wants converted, `avro_bounds` refuses schemas a tiny record could make endless),
`protobuf`, `json_schema`.
"""
