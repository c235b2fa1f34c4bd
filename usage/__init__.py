"""Usage metering and per-key limits: records, the batched writer, aggregation."""
