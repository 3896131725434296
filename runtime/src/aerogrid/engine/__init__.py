"""The engine: records in from Kafka, through the handlers, grids out to the changelog."""
