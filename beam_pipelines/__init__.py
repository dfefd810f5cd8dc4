"""Pipeline assembly and the shopstream CLI.

- ``io``: file inputs, the Kinesis source and replay, Parquet tables and schemas;
- ``pipelines``: batch, streaming, backfill, replay and derived, with their
  options, runner configs and run summary;
- ``dev``: kinesis-local, a local Flink cluster, sample data and the demo;
- here: the ``shopstream`` command (``cli``), its report and the EMR deploy.
"""
