"""The broker compatibility suite: which Kafka clients work against which local broker mode."""
