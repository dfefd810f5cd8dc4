"""The tables as Apache Iceberg tables: each publish one atomic commit per table.

A Hive-partitioned folder on S3 has no atomic replace: a publish copies new
files in and deletes old ones, so a reader (Athena, Spark, DuckDB) may see
both, and a crash in between leaves both. An Iceberg table's current state
is one pointer in its catalog; a publish writes new data files, then swaps
the pointer in one commit, so a reader sees the old partition or the new
one, and a crash before the commit leaves the old one (its files are
orphans no reader lists).

The catalog is pyiceberg's: its configuration comes from pyiceberg's own
settings (``~/.pyiceberg.yaml`` or ``PYICEBERG_CATALOG__<NAME>__*``
environment variables), e.g. ``type: glue`` on AWS, where Athena and EMR
read the tables natively. A local output with no catalog configured gets a
SQL catalog on SQLite in ``<output>/_iceberg_catalog.db``.

Each table lives at ``<output>/<table>`` (data/ and metadata/ folders), a
partitioned one by identity on ``dt`` (a string column, as in the Hive
layout). Old snapshots' files stay until an engine expires them (Athena
VACUUM, Spark's expire_snapshots): pyiceberg 0.8 cannot.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.io.parquet_sink import WrittenFile
from beam_pipelines.io.tables import PARTITION_COLUMN, TableSpec

LOCAL_CATALOG_FILE = '_iceberg_catalog.db'


def is_local(output: str) -> bool:
  return FileSystems.get_scheme(output) in (None, 'file')


def load_catalog(output: str, name: str):
  """The catalog ``name`` from pyiceberg's configuration, else a SQLite one in a local
  output; raises ValueError for an object store output with no catalog configured."""
  from pyiceberg.catalog import load_catalog as load_configured
  from pyiceberg.catalog.sql import SqlCatalog
  from pyiceberg.utils.config import Config

  # Read now, not at import: pyiceberg's load_catalog alone sees the environment as
  # it was when pyiceberg was first imported.
  configured = Config().get_catalog_config(name)
  if configured is not None:
    return load_configured(name, **configured)
  if not is_local(output):
    variable = f'PYICEBERG_CATALOG__{name.upper()}__TYPE'
    raise ValueError(
      f'--table-format iceberg on {output} needs the Iceberg catalog {name!r} configured: '
      f'set {variable}=glue (AWS Glue), or a SQL catalog (PYICEBERG_CATALOG__'
      f'{name.upper()}__URI=sqlite:///PATH), in the environment or ~/.pyiceberg.yaml'
    )
  os.makedirs(output, exist_ok=True)
  database = os.path.join(os.path.abspath(output), LOCAL_CATALOG_FILE)
  return SqlCatalog(name, uri=f'sqlite:///{database}')


def table_location(output: str, table: str) -> str:
  location = FileSystems.join(output, table)
  return os.path.abspath(location) if is_local(output) else location


def iceberg_schema(spec: TableSpec) -> pa.Schema:
  """The table's Arrow schema, with the dt column where it is partitioned."""
  if spec.partitioned:
    return spec.schema.append(pa.field(PARTITION_COLUMN, pa.string()))
  return spec.schema


def open_table(catalog, namespace: str, spec: TableSpec, output: str):
  """The Iceberg table of ``spec``, created (partitioned by dt) on first use, and given
  any column the spec has gained since."""
  from pyiceberg.exceptions import NoSuchTableError

  identifier = f'{namespace}.{spec.name}'
  schema = iceberg_schema(spec)
  try:
    table = catalog.load_table(identifier)
  except NoSuchTableError:
    catalog.create_namespace_if_not_exists(namespace)
    creation = catalog.create_table_transaction(
      identifier, schema=schema, location=table_location(output, spec.name)
    )
    if spec.partitioned:
      with creation.update_spec() as update:
        update.add_identity(PARTITION_COLUMN)
    creation.commit_transaction()
    return catalog.load_table(identifier)
  if set(schema.names) - {field.name for field in table.schema().fields}:
    with table.update_schema() as update:
      update.union_by_name(schema)
    table = catalog.load_table(identifier)
  return table


def read_staged(spec: TableSpec, files: Iterable[WrittenFile]) -> pa.Table:
  """Staged Parquet files of one table, in its Iceberg schema (dt from each file's day)."""
  parts = []
  for file in files:
    with FileSystems.open(file.path) as f:
      part = pq.read_table(f, schema=spec.schema)
    if spec.partitioned:
      part = part.append_column(
        pa.field(PARTITION_COLUMN, pa.string()), pa.array([file.day] * part.num_rows, pa.string())
      )
    parts.append(part)
  if not parts:
    return iceberg_schema(spec).empty_table()
  return pa.concat_tables(parts)


def replace(
  table,
  spec: TableSpec,
  staged: Sequence[WrittenFile],
  removed_days: Iterable[str] = (),
  whole: bool = False,
) -> None:
  """One commit: each day staged replaces that partition, ``removed_days`` are emptied,
  and a ``whole`` table keeps only what was staged."""
  from pyiceberg.expressions import AlwaysTrue, EqualTo, In, Not

  days = sorted({file.day for file in staged}, key=lambda day: day or '')
  # pyiceberg warns "Delete operation did not match any records" for a new partition.
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', UserWarning)
    with table.transaction() as transaction:
      if whole and not spec.partitioned:
        transaction.overwrite(read_staged(spec, staged), overwrite_filter=AlwaysTrue())
        return
      if whole:
        transaction.delete(Not(In(PARTITION_COLUMN, days)) if days else AlwaysTrue())
      for day in days:
        data = read_staged(spec, [file for file in staged if file.day == day])
        transaction.overwrite(data, overwrite_filter=EqualTo(PARTITION_COLUMN, day))
      for day in sorted(set(removed_days) - set(days)):
        transaction.delete(EqualTo(PARTITION_COLUMN, day))


def publish(
  catalog,
  namespace: str,
  output: str,
  specs: Mapping[str, TableSpec],
  staged: Mapping[str, Sequence[WrittenFile]],
  owned_days: Mapping[str, Sequence[str]],
  whole_tables: Sequence[str],
) -> None:
  """Commits each table's staged files (see replace); one commit per table."""
  for name in sorted(set(staged) | set(owned_days) | set(whole_tables)):
    spec = specs[name]
    table = open_table(catalog, namespace, spec, output)
    replace(table, spec, staged.get(name, ()), owned_days.get(name, ()), name in whole_tables)


def current_files(catalog, namespace: str, spec: TableSpec) -> list[tuple[str, Optional[str]]]:
  """(path, dt) of each data file of the table's current snapshot (dt None where the
  table is unpartitioned; no files if the table does not exist)."""
  from pyiceberg.exceptions import NoSuchTableError

  try:
    table = catalog.load_table(f'{namespace}.{spec.name}')
  except NoSuchTableError:
    return []
  files = []
  for task in table.scan().plan_files():
    day = task.file.partition[0] if spec.partitioned else None
    files.append((task.file.file_path, day))
  return sorted(files)
