"""Prometheus metrics of a runtime process, in one registry served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_IN = Counter(
    "aerogrid_records_in", "Input records consumed", ["app", "topic"], registry=REGISTRY
)
DECODE_ERRORS = Counter(
    "aerogrid_decode_errors",
    "Input records that failed to decode",
    ["app", "topic"],
    registry=REGISTRY,
)
HANDLER_ERRORS = Counter(
    "aerogrid_handler_errors",
    "Input records whose handler raised",
    ["app", "topic"],
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "aerogrid_dead_lettered",
    "Records sent to the dead-letter topic",
    ["app", "topic"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "aerogrid_skipped",
    "Bad records skipped (on_error='skip')",
    ["app", "topic"],
    registry=REGISTRY,
)
TASK_ERRORS = Counter(
    "aerogrid_task_errors",
    "Timer ticks and tasks that raised",
    ["app", "task"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "aerogrid_consumer_lag",
    "Records behind the end of each input partition",
    ["app", "topic", "partition"],
    registry=REGISTRY,
)
RESTORE_SECONDS = Gauge(
    "aerogrid_restore_seconds",
    "Time taken to restore each grid from its changelog",
    ["app", "grid"],
    registry=REGISTRY,
)
GRID_ROWS = Gauge("aerogrid_grid_rows", "Rows per grid", ["app", "grid"], registry=REGISTRY)
SUBSCRIBERS = Gauge(
    "aerogrid_subscribers", "Open grid subscriptions", ["app", "grid"], registry=REGISTRY
)
UPDATES_SENT = Counter(
    "aerogrid_updates_sent",
    "Snapshot and delta messages sent to subscribers",
    ["app", "grid"],
    registry=REGISTRY,
)
ROWS_CONFLATED = Counter(
    "aerogrid_rows_conflated",
    "Row changes merged by per-subscriber conflation",
    ["app", "grid"],
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "aerogrid_auth_failures",
    "Requests refused by authentication or authorization",
    ["reason"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "aerogrid_batch_seconds",
    "Time to process and commit one input batch",
    ["app"],
    registry=REGISTRY,
)
GUARANTEE = Gauge(
    "aerogrid_guarantee",
    "The processing guarantee in use (1 for the one chosen): exactly-once or checkpointed",
    ["app", "guarantee"],
    registry=REGISTRY,
)
BROKER_REACHABLE = Gauge(
    "aerogrid_broker_reachable",
    "1 while the app reaches its Kafka cluster, 0 during an outage (it then serves its "
    "last committed state)",
    ["app"],
    registry=REGISTRY,
)
BROKER_OUTAGES = Counter(
    "aerogrid_broker_outages",
    "Times the app lost its Kafka cluster",
    ["app"],
    registry=REGISTRY,
)
CLIENT_LOG_SUPPRESSED = Counter(
    "aerogrid_client_log_suppressed",
    "Kafka client log lines held back (repeats, and every line during an outage)",
    ["level"],
    registry=REGISTRY,
)
INPUT_RECORDS_EXPIRED = Counter(
    "aerogrid_input_records_expired",
    "Input records deleted by retention before the app read them",
    ["app", "topic"],
    registry=REGISTRY,
)
RESYNCS = Counter(
    "aerogrid_resyncs",
    "Times the app found its topics gone from the broker and wrote its grids again",
    ["app"],
    registry=REGISTRY,
)
REQUESTS_REFUSED = Counter(
    "aerogrid_requests_refused",
    "Requests refused before reaching a service: malformed, incomplete or too slow",
    ["transport", "reason"],
    registry=REGISTRY,
)
SUBSCRIBERS_DROPPED = Counter(
    "aerogrid_subscribers_dropped",
    "Subscriptions ended because their client stopped reading and fell behind the window",
    registry=REGISTRY,
)
COMMIT_RETRIES = Counter(
    "aerogrid_commit_retries",
    "Batch commits retried after a transient broker failure (the batch is committed once)",
    ["app"],
    registry=REGISTRY,
)
REPLICA_ROLE = Gauge(
    "aerogrid_replica_role",
    "1 for the role this process holds now (active, standby, serve-only, starting), 0 others",
    ["app", "role"],
    registry=REGISTRY,
)
REPLICA_LAG = Gauge(
    "aerogrid_replica_lag_records",
    "Changelog records this process's copy of a grid is behind (0 on the active)",
    ["app", "grid"],
    registry=REGISTRY,
)
FAILOVERS = Counter(
    "aerogrid_failovers",
    "Times this process became the active replica after another had been",
    ["app"],
    registry=REGISTRY,
)
RESUMES = Counter(
    "aerogrid_resumes",
    "Subscriptions that asked to resume, by how they were answered (delta or snapshot)",
    ["app", "grid", "kind"],
    registry=REGISTRY,
)
SCHEMA_REGISTRY_UP = Gauge(
    "aerogrid_schema_registry_up",
    "1 while the app's schema registry answers, 0 while records wait for it (consumption is "
    "paused, nothing is dead-lettered for it)",
    ["app"],
    registry=REGISTRY,
)
SCHEMA_REGISTRY_ERRORS = Counter(
    "aerogrid_schema_registry_errors",
    "Schema registry requests that failed, by kind (unavailable, auth, not_found, rejected)",
    ["app", "kind"],
    registry=REGISTRY,
)
SCHEMA_REGISTRY_PAUSES = Counter(
    "aerogrid_schema_registry_pauses",
    "Times consumption paused because the schema registry could not be reached",
    ["app"],
    registry=REGISTRY,
)
RECORDS_WAITING_ON_REGISTRY = Gauge(
    "aerogrid_records_waiting_on_registry",
    "Input records read but held back until the registry gives their writer schema",
    ["app"],
    registry=REGISTRY,
)
