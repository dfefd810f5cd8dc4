"""Inputs and outputs: files, Kinesis, Parquet tables and their schemas."""
