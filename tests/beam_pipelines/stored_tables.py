"""Test helpers: a table's rows as an output holds them now, Parquet or Iceberg alike."""

from __future__ import annotations

import sqlite3
import tempfile
from typing import Optional

import duckdb
import pyarrow as pa

from beam_pipelines.io import table_store
from beam_pipelines.io.iceberg_tables import LOCAL_CATALOG_FILE


def read_stored(output, table: str) -> Optional[pa.Table]:
  """Every row of the table's current files, dt included; None if it has no files."""
  return table_store.for_output(str(output)).read(table)


def stored_rows(output, table: str, columns: str = '*', where: str = 'true') -> list[tuple]:
  """The table's rows, sorted, by DuckDB over what read_stored found."""
  stored = read_stored(output, table)
  if stored is None:
    return []
  con = duckdb.connect()
  con.register('stored', stored)
  return con.execute(f'select {columns} from stored where {where} order by all').fetchall()


def iceberg_metadata(output, table: str, namespace: str = 'shopstream') -> str:
  """The current metadata file of an Iceberg table in a local output's SQLite catalog."""
  with sqlite3.connect(f'{output}/{LOCAL_CATALOG_FILE}') as db:
    (location,) = db.execute(
      'select metadata_location from iceberg_tables where table_namespace = ? and table_name = ?',
      (namespace, table),
    ).fetchone()
  return location


def duckdb_with_iceberg() -> duckdb.DuckDBPyConnection:
  """A DuckDB connection with its iceberg extension, loaded from the PyPI wheels."""
  from duckdb_extensions import import_extension

  con = duckdb.connect()
  # INSTALL copies into the extension folder: one of its own, so that test
  # processes running at once do not write one file together.
  con.execute(f"set extension_directory = '{tempfile.mkdtemp(prefix='duckdb-ext-')}'")
  for extension in ('avro', 'iceberg'):
    import_extension(extension, con=con)
  con.execute('load iceberg')
  return con
