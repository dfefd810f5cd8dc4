"""Where an output's tables live: Hive-partitioned Parquet, or Apache Iceberg tables.

Both hold the same rows in the same columns. Parquet (the default) is plain
folders any engine reads (parquet_sink.py); Iceberg gives readers atomic
commits (iceberg_tables.py). An output records its format in
``_table_format.json`` at its first Iceberg publish, so later runs, derive,
replay and the report read and write it the same way; a run that asks for
the other format than its output holds is refused.

    store = table_store.for_output(output, table_format='iceberg')
    ... the run stages its files and manifest (parquet_sink.write_tables) ...
    store.publish_staged(run_id)
    store.files('events')  -> [TableFile(path, day), ...]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Optional

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.io import iceberg_tables, parquet_sink
from beam_pipelines.io.tables import ALL_TABLES, PARTITION_COLUMN

PARQUET = 'parquet'
ICEBERG = 'iceberg'
FORMATS = (PARQUET, ICEBERG)
FORMAT_FILE = '_table_format.json'
DEFAULT_CATALOG = 'shopstream'
DEFAULT_NAMESPACE = 'shopstream'


class TableFile(NamedTuple):
  path: str
  day: Optional[str]  # None: an unpartitioned table


@dataclasses.dataclass(frozen=True)
class TableStore:
  output: str
  table_format: str = PARQUET
  catalog_name: str = DEFAULT_CATALOG
  namespace: str = DEFAULT_NAMESPACE

  def catalog(self):
    return iceberg_tables.load_catalog(self.output, self.catalog_name)

  def publish_staged(self, run_id: str) -> bool:
    """Publishes what run ``run_id`` staged (parquet_sink's manifest); False if it staged
    no manifest. Each partition the run wrote replaces the old one whole."""
    manifest = parquet_sink.read_manifest(self.output, run_id)
    if manifest is None:
      return False
    if self.table_format == PARQUET:
      parquet_sink.publish(self.output, run_id, manifest)
      return True
    catalog = self.catalog()
    self._record_format()
    staged: dict[str, list[parquet_sink.WrittenFile]] = {}
    for file in manifest.written:
      staged.setdefault(file.table, []).append(file)
    iceberg_tables.publish(
      catalog,
      self.namespace,
      self.output,
      ALL_TABLES,
      staged,
      manifest.days_by_table(),
      manifest.whole_tables,
    )
    parquet_sink.remove_tree(parquet_sink.staging_root(self.output, run_id))
    return True

  def files(self, table: str) -> list[TableFile]:
    """The Parquet files that hold the table now, with their dt partition (None for an
    unpartitioned table)."""
    spec = ALL_TABLES[table]
    if self.table_format == ICEBERG:
      current = iceberg_tables.current_files(self.catalog(), self.namespace, spec)
      return [TableFile(path, day) for path, day in current]
    root = FileSystems.join(self.output, table)
    if spec.partitioned:
      pattern = FileSystems.join(root, f'{PARTITION_COLUMN}=*', '*.parquet')
    else:
      pattern = FileSystems.join(root, '*.parquet')
    paths = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
    return [TableFile(path, partition_of(path) if spec.partitioned else None) for path in paths]

  def read(self, table: str, columns: Optional[Sequence[str]] = None) -> Optional[pa.Table]:
    """The table's rows now (``columns`` of them that it has, dt among them where
    partitioned); None if it has no files."""
    parts = []
    for path, day in self.files(table):
      with FileSystems.open(path) as f:
        parquet = pq.ParquetFile(f)
        stored = parquet.schema_arrow.names
        part = parquet.read(columns=[c for c in columns if c in stored] if columns else None)
      wanted = columns is None or PARTITION_COLUMN in columns
      if wanted and day is not None and PARTITION_COLUMN not in stored:
        part = part.append_column(PARTITION_COLUMN, pa.array([day] * part.num_rows, pa.string()))
      parts.append(part.replace_schema_metadata(None))
    return pa.concat_tables(parts, promote_options='default') if parts else None

  def _record_format(self) -> None:
    path = FileSystems.join(self.output, FORMAT_FILE)
    if FileSystems.exists(path):
      return
    parquet_sink.make_dirs(self.output)
    with FileSystems.create(path) as f:
      f.write(json.dumps(self._settings()).encode())

  def _settings(self) -> Mapping[str, str]:
    return {
      'table_format': self.table_format,
      'catalog': self.catalog_name,
      'namespace': self.namespace,
    }


def partition_of(path: str) -> str:
  """The dt value of a partitioned table's file, from its dt=DAY folder."""
  return path.rstrip('/').rsplit('/', 2)[-2].partition('=')[2]


def recorded_settings(output: str) -> Optional[dict]:
  """The output's _table_format.json, or None (a Parquet output, or a new one)."""
  path = FileSystems.join(output, FORMAT_FILE)
  if not FileSystems.exists(path):
    return None
  with FileSystems.open(path) as f:
    return json.loads(f.read())


def for_output(
  output: str,
  table_format: Optional[str] = None,
  catalog: Optional[str] = None,
  namespace: Optional[str] = None,
) -> TableStore:
  """The store of ``output``: as it records, or as asked for a new output. Raises
  ValueError where what is asked differs from what the output holds."""
  recorded = recorded_settings(output)
  if recorded is None:
    if table_format == ICEBERG and any(
      parquet_sink.partitions_of(output, name) for name in ALL_TABLES
    ):
      raise ValueError(
        f'{output} holds Parquet tables: --table-format iceberg needs a new output '
        '(or leave the flag out to keep writing Parquet)'
      )
    if table_format not in (None, PARQUET, ICEBERG):
      raise ValueError(f'--table-format must be one of {", ".join(FORMATS)}, not {table_format!r}')
    return TableStore(
      output, table_format or PARQUET, catalog or DEFAULT_CATALOG, namespace or DEFAULT_NAMESPACE
    )
  store = TableStore(output, recorded['table_format'], recorded['catalog'], recorded['namespace'])
  if table_format is not None and table_format != store.table_format:
    raise ValueError(
      f'{output} holds Iceberg tables ({FORMAT_FILE}): leave --table-format out, or use '
      'a new output for Parquet'
    )
  for key, value in (('catalog', catalog), ('namespace', namespace)):
    if value is not None and value != recorded[key]:
      raise ValueError(
        f'the tables of {output} are in {key} {recorded[key]!r}, not {value!r} '
        f'({FORMAT_FILE}): leave --iceberg-{key} out, or use a new output'
      )
  return store


def table_files(output: str, table: str) -> list[TableFile]:
  """The files that hold ``table`` of ``output`` now, in whichever format it is."""
  return for_output(output).files(table)


def for_options(opts) -> TableStore:
  """The store of a run's --output, --table-format, --iceberg-catalog, --iceberg-namespace."""
  return for_output(opts.output, opts.table_format, opts.iceberg_catalog, opts.iceberg_namespace)
