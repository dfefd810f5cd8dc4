"""The pipelines (batch, streaming, backfill, replay, derived), their options and runs."""
