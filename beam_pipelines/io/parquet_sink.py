"""Hive-partitioned Parquet tables, written to staging and published after the run.

Each bundle writes its rows, per partition day, to files with unique names
under ``<output>/_staging/<run_id>/``. Only files of bundles that finished
reach the run's manifest (``_manifest.json`` in its staging folder), so a
retried bundle leaves no duplicate rows behind. Once the run has finished
and its accounting holds, the driver publishes the manifest: every partition
the run wrote is replaced as a whole (partition overwrite), so rerunning the
same input gives the same tables and partitions the run did not touch stay
as they were. A run that fails, or whose records do not add up, publishes
nothing: the tables stay as they were.

    rows | WriteTable(tables.EVENTS, output, run_id)  -> WrittenFile records
    written | StageManifest(output, run_id)
    ... pipeline.run().wait_until_finish(); accounting checked ...
    table_store.for_output(output).publish_staged(run_id)  # publish() here, for Parquet
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Optional, Union

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from beam_pipelines.io.tables import (
  PARTITION_COLUMN,
  TableSpec,
  cast_to_schema,
  column_indices,
  split_by_day,
  to_arrow,
)
from transforms import accounting

_LOGGER = logging.getLogger(__name__)

STAGING_DIR = '_staging'
MANIFEST = '_manifest.json'
# Rows buffered per partition before a row group is written. A bundle buffers
# this many rows for every day it holds at once: at 100k, 1M events over 7
# days peaked at 1,866 MB, at 20k at 1,464 MB, equally fast (measured).
ROW_GROUP_ROWS = 20_000


class WrittenFile(NamedTuple):
  table: str
  day: Optional[str]  # None: an unpartitioned (snapshot) table
  path: str
  rows: int


def staging_root(output: str, run_id: str) -> str:
  return FileSystems.join(output, STAGING_DIR, run_id)


def partition_dir(root: str, table: str, day: Optional[str]) -> str:
  """A table's dt=DAY folder, or the table's own folder for unpartitioned (day None)."""
  if day is None:
    return FileSystems.join(root, table)
  return FileSystems.join(root, table, f'{PARTITION_COLUMN}={day}')


def make_dirs(directory: str) -> None:
  """Creates a folder (and its parents) unless it exists; another writer may race us."""
  if FileSystems.exists(directory):
    return
  try:
    FileSystems.mkdirs(directory)
  except OSError:  # another bundle made it first
    if not FileSystems.exists(directory):
      raise


class _WriteStagedParquet(beam.DoFn):
  def __init__(self, spec: TableSpec, staging: str):
    self._spec = spec
    self._staging = staging

  def setup(self):
    self._indices = column_indices(self._spec)

  def start_bundle(self):
    self._buffers: dict[str, list] = {}  # day -> rows, or Arrow tables in the table's schema
    self._buffered: dict[str, int] = {}  # day -> rows buffered
    self._writers: dict[str, tuple] = {}  # day -> (writer, stream, path, rows)

  def process(self, element):
    if isinstance(element, pa.Table):
      for day, rows in split_by_day(self._spec, element):
        self._buffer(day, [cast_to_schema(self._spec, rows)], rows.num_rows)
    else:
      self._buffer(self._spec.partition_day(element), [element], 1)
    # Files go out from finish_bundle; a generator keeps Beam 2.62 from warning
    # "No iterator is returned by the process method" once per table and run.
    yield from ()

  def _buffer(self, day: str, items: list, rows: int) -> None:
    self._buffers.setdefault(day, []).extend(items)
    self._buffered[day] = self._buffered.get(day, 0) + rows
    if self._buffered[day] >= ROW_GROUP_ROWS:
      self._flush(day)

  def _flush(self, day: str) -> None:
    items = self._buffers.pop(day, None)
    self._buffered.pop(day, None)
    if not items:
      return
    if day not in self._writers:
      directory = partition_dir(self._staging, self._spec.name, day)
      path = FileSystems.join(directory, f'part-{uuid.uuid4().hex}.parquet')
      make_dirs(directory)
      stream = FileSystems.create(path)
      writer = pq.ParquetWriter(stream, self._spec.schema, compression='zstd')
      self._writers[day] = (writer, stream, path, 0)
    writer, stream, path, count = self._writers[day]
    tables = [item for item in items if isinstance(item, pa.Table)]
    rows = [item for item in items if not isinstance(item, pa.Table)]
    if rows:
      tables.append(to_arrow(self._spec, rows, self._indices))
    table = pa.concat_tables(tables)
    writer.write_table(table)
    self._writers[day] = (writer, stream, path, count + table.num_rows)

  def finish_bundle(self):
    for day in list(self._buffers):
      self._flush(day)
    for day, (writer, stream, path, count) in self._writers.items():
      writer.close()
      stream.close()
      yield WindowedValue(
        WrittenFile(self._spec.name, day, path, count), MIN_TIMESTAMP, [GlobalWindow()]
      )
    self._writers = {}


class WriteTable(beam.PTransform):
  """Rows of one table (records, or Arrow tables of them) to staged Parquet files for
  StageManifest; outputs the WrittenFiles."""

  def __init__(self, spec: TableSpec, output: str, run_id: str):
    super().__init__()
    self._spec = spec
    self._staging = staging_root(output, run_id)

  def expand(self, rows):
    return rows | 'WriteStagedParquet' >> beam.ParDo(
      _WriteStagedParquet(self._spec, self._staging)
    ).with_output_types(WrittenFile)


class Manifest(NamedTuple):
  """What a run staged (WrittenFiles of finished bundles) and which partitions it owns.

  ``owned_days`` (a backfill's day) are the run's even where it wrote no
  rows: those partitions of ``table_names`` are removed, not left stale.
  ``owned_days`` may also map each table to its own days (a replay).
  ``whole_tables`` (snapshots) keep only what this run wrote.
  """

  written: list[WrittenFile]
  table_names: list[str]
  owned_days: Union[list[str], dict[str, list[str]]]
  whole_tables: list[str]

  def days_by_table(self) -> dict[str, list[str]]:
    if isinstance(self.owned_days, Mapping):
      return {table: list(days) for table, days in self.owned_days.items()}
    return {table: list(self.owned_days) for table in self.table_names}


def read_manifest(output: str, run_id: str) -> Optional[Manifest]:
  """The manifest run ``run_id`` staged, or None if it staged none."""
  path = FileSystems.join(staging_root(output, run_id), MANIFEST)
  if not FileSystems.exists(path):
    return None
  with FileSystems.open(path) as f:
    manifest = json.loads(f.read())
  return Manifest(
    [WrittenFile(**file) for file in manifest['written']],
    manifest['table_names'],
    manifest['owned_days'],
    manifest['whole_tables'],
  )


def publish(output: str, run_id: str, manifest: Manifest) -> None:
  """Moves the staged partitions into place, replacing each one whole (see Manifest for
  the partitions a run owns without writing them)."""
  staging = staging_root(output, run_id)
  written = manifest.written
  partitions = sorted({(f.table, f.day) for f in written}, key=lambda p: (p[0], p[1] or ''))
  for table, day in partitions:
    staged = partition_dir(staging, table, day)
    final = partition_dir(output, table, day)
    committed = {f.path for f in written if (f.table, f.day) == (table, day)}
    _replace_partition(staged, final, committed)
  for table, days in manifest.days_by_table().items():
    for day in days:
      if (table, day) not in partitions:
        remove_tree(partition_dir(output, table, day))
  for table in manifest.whole_tables:
    written_days = {day for t, day in partitions if t == table}
    if None not in written_days:  # an unpartitioned table written is replaced already
      for stale in partitions_of(output, table) - written_days:
        remove_tree(partition_dir(output, table, stale))
  remove_tree(staging)
  _LOGGER.info('published %d partitions to %s', len(partitions), output)


def _replace_partition(staged: str, final: str, committed: set[str]) -> None:
  # Files from failed bundle attempts are in staging too: only committed move.
  if FileSystems.get_scheme(final) in (None, 'file'):
    # Two renames: readers see the old partition or the new one, never a mix.
    _remove_uncommitted(staged, committed)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    trash = os.path.join(
      os.path.dirname(final), f'.{os.path.basename(final)}.old-{uuid.uuid4().hex}'
    )
    if os.path.exists(final):
      os.rename(final, trash)
    os.rename(staged, final)
    shutil.rmtree(trash, ignore_errors=True)
    return
  # Object stores have no directory rename: move files in, then drop the old ones.
  old = [m.path for r in FileSystems.match([FileSystems.join(final, '*')]) for m in r.metadata_list]
  sources = sorted(committed)
  targets = [FileSystems.join(final, os.path.basename(p)) for p in sources]
  FileSystems.rename(sources, targets)
  stale = [p for p in old if p not in set(targets)]
  if stale:
    FileSystems.delete(stale)


def partitions_of(output: str, table: str) -> set[Optional[str]]:
  """The dt values of a table's partitions; {None} for files straight in its folder."""
  prefix = f'{PARTITION_COLUMN}='
  root = FileSystems.join(output, table)
  if FileSystems.get_scheme(root) in (None, 'file'):
    if not os.path.isdir(root):
      return set()
    names = os.listdir(root)
    days: set[Optional[str]] = {n[len(prefix) :] for n in names if n.startswith(prefix)}
    return days | ({None} if any(n.endswith('.parquet') for n in names) else set())
  found: set[Optional[str]] = set()
  for result in FileSystems.match([FileSystems.join(root, '**')]):
    for m in result.metadata_list:
      relative = m.path[len(root) :].lstrip('/')
      first = relative.split('/', 1)[0]
      found.add(first[len(prefix) :] if first.startswith(prefix) else None)
  return found


def _remove_uncommitted(staged: str, committed: set[str]) -> None:
  for name in os.listdir(staged):
    path = os.path.join(staged, name)
    if path not in committed:
      os.remove(path)


def remove_tree(path: str) -> None:
  """Deletes a folder (local) or every object under a prefix (object stores)."""
  if FileSystems.get_scheme(path) in (None, 'file'):
    shutil.rmtree(path, ignore_errors=True)
    parent = os.path.dirname(path)
    if os.path.isdir(parent) and not os.listdir(parent):
      os.rmdir(parent)
    return
  leftovers = [
    m.path for r in FileSystems.match([FileSystems.join(path, '**')]) for m in r.metadata_list
  ]
  if leftovers:
    FileSystems.delete(leftovers)


def _frozen(owned_days):
  if isinstance(owned_days, Mapping):
    return {table: tuple(days) for table, days in owned_days.items()}
  return tuple(owned_days)


_KeyedFile = tuple[None, Optional[WrittenFile]]


class _WriteManifest(beam.DoFn):
  def __init__(self, output: str, run_id: str, table_names, owned_days, whole_tables):
    self._output = output
    self._run_id = run_id
    self._owned = (tuple(table_names), _frozen(owned_days), tuple(whole_tables))

  def process(self, grouped: tuple[None, Iterable[Optional[WrittenFile]]]):
    written = [file for file in grouped[1] if file is not None]
    table_names, owned_days, whole_tables = self._owned
    manifest = {
      'written': [file._asdict() for file in written],
      'table_names': list(table_names),
      'owned_days': owned_days,
      'whole_tables': list(whole_tables),
    }
    path = FileSystems.join(staging_root(self._output, self._run_id), MANIFEST)
    make_dirs(staging_root(self._output, self._run_id))
    with FileSystems.create(path) as f:
      f.write(json.dumps(manifest).encode())
    # Rows are counted here, once, from the files staged, not by the writers:
    # a writer runs after a Flatten, which Flink's portable runner fuses into
    # every input's stage, and there the counters of the copies did not add
    # up (dead_letter: 1 of 16 rows counted on Flink 1.19, seen).
    rows: dict[str, int] = {}
    for file in written:
      rows[file.table] = rows.get(file.table, 0) + file.rows
    for table, n in rows.items():
      accounting.count(accounting.TABLE_ROWS, table, n)
    yield len(written)


class StageManifest(beam.PTransform):
  """Waits for every WrittenFile of the run, then records them in the run's manifest
  for TableStore.publish_staged (table_store.py)."""

  def __init__(
    self,
    output: str,
    run_id: str,
    table_names: Sequence[str] = (),
    owned_days: Union[Sequence[str], Mapping[str, Sequence[str]]] = (),
    whole_tables: Sequence[str] = (),
  ):
    super().__init__()
    self._output = output
    self._run_id = run_id
    self._owned = (tuple(table_names), _frozen(owned_days), tuple(whole_tables))

  def expand(self, written_files):
    # Every WrittenFile under one key, with a None so that the key exists when
    # the run wrote no file. Beam's ToList (a CombineGlobally) did the same with
    # six ParDos where this has two, each one Beam inspects, pickles and builds
    # an operation for (~15 ms a step in process, measured). Not a side input:
    # the legacy DirectRunner then lost WriteManifest's counters (seen).
    no_file = (
      written_files.pipeline
      | 'Once' >> beam.Impulse()
      | 'NoFile' >> beam.Map(lambda _: (None, None)).with_output_types(_KeyedFile)
    )
    files = written_files | 'KeyFiles' >> beam.Map(lambda file: (None, file)).with_output_types(
      _KeyedFile
    )
    return (
      (no_file, files)
      | 'FlattenKeyed' >> beam.Flatten()
      | 'CollectWrittenFiles' >> beam.GroupByKey()
      | 'WriteManifest' >> beam.ParDo(_WriteManifest(self._output, self._run_id, *self._owned))
    )


def write_tables(
  rows: Mapping[str, beam.PCollection],
  specs: Mapping[str, TableSpec],
  output: str,
  run_id: str,
  owned_days: Union[Sequence[str], Mapping[str, Sequence[str]]] = (),
  whole_tables: Sequence[str] = (),
) -> None:
  """Each table's rows staged (WriteTable) and listed in the run's manifest (StageManifest),
  for TableStore.publish_staged once the run has finished."""
  written = [
    table_rows | f'Write {name}' >> WriteTable(specs[name], output, run_id)
    for name, table_rows in rows.items()
  ]
  _ = (
    written
    | 'FlattenWrittenFiles' >> beam.Flatten()
    | 'StageManifest' >> StageManifest(output, run_id, list(rows), owned_days, whole_tables)
  )
