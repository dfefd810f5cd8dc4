"""Windowed Parquet files for the streaming pipeline, named so that a retry rewrites them.

A streaming run cannot stage and publish at the end: it never ends. Rows are
grouped per (partition day, file shard) in fixed windows of their element
timestamp and written when the watermark closes the window, one file per
(window, pane, shard) with a name made only of those and of the job's id:

    <output>/<table>/dt=<day>/w<window start, UTC>Z-p<pane>-s<shard>[-j<job>].parquet

The job id is fixed when the job is submitted, so that a runner's retries
within the job reproduce its names while a second job writing into the same
output (a restart from committed Kafka offsets, a new run of a stream) never
replaces the first one's files: seen, a second run's dead letters of the same
ten minutes replaced the first run's.

Events and sessions are emitted by event-time timers when final (see
transforms/sessions/streaming.py), so they are never late for these windows, and an
on-time pane holds exactly the rows whose timestamps fall in the window,
sorted. A runner that redoes work after a failure (Flink restoring a
checkpoint and replaying Kinesis from it) therefore writes the same files
again, byte for byte, over the old ones: no second copy of a row. A file
appears whole or not at all: written under a hidden name, then renamed (on
S3 an object appears whole when its upload completes).

Dead letters of unreadable records carry their record's event time, which
may be behind the watermark: they land in late panes (fired as they come;
a processing-time delay stalled the DirectRunner's TestStream), never
dropped within the allowed lateness. Late panes are not deterministic under
replay: a replayed late row may land in a second file.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zlib

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from beam_pipelines.io.parquet_sink import WrittenFile, make_dirs, partition_dir
from beam_pipelines.io.tables import TableSpec, column_indices, to_arrow
from transforms import accounting

DEFAULT_WINDOW_S = 10 * 60
DEFAULT_FILE_SHARDS = 2
# Rows later than this (timestamp behind the watermark) would be dropped by
# the windows: a week, as long as a session key remembers its boundary.
ALLOWED_LATENESS_S = 7 * 24 * 3600


def file_name(window_start_us: int, pane_index: int, shard: int, job: str = '') -> str:
  """The file of one (window, pane, shard) of a job: the same on every retry."""
  # Rows read at start-up (the product dimension's dead letters) carry Beam's
  # minimum timestamp; they are named after the epoch (no event is that old).
  start = dt.datetime.fromtimestamp(max(window_start_us, 0) / 1e6, dt.UTC)
  suffix = f'-j{job}' if job else ''
  return f'w{start:%Y%m%dT%H%M%S}Z-p{pane_index:04d}-s{shard:03d}{suffix}.parquet'


def row_sort_key(row: tuple) -> tuple:
  """A total order over rows of any table (None first), for byte-identical files."""
  return tuple((value is not None, value if value is not None else 0) for value in row)


class _KeyByDayAndShard(beam.DoFn):
  def __init__(self, spec: TableSpec, shards: int):
    self._spec = spec
    self._shards = shards

  def process(self, row):
    # The first field is the row's identity (event_id, session_id, payload).
    identity = row[0] if isinstance(row[0], bytes) else str(row[0]).encode()
    yield (self._spec.partition_day(row), zlib.crc32(identity) % self._shards), row


class _WriteWindowFile(accounting.CountingDoFn):
  def __init__(self, spec: TableSpec, output: str, job: str):
    self._spec = spec
    self._output = output
    self._job = job

  def setup(self):
    self._indices = column_indices(self._spec)

  def process(self, grouped, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
    (day, shard), rows = grouped
    rows = sorted(rows, key=row_sort_key)
    if not rows:
      # Python windowing asks runners to emit a final pane even when empty, and
      # Flink 1.19's runner (Beam 2.62) fires one per window when the watermark
      # passes its lateness, named like the on-time pane (ON_TIME, index 0,
      # seen): writing it would replace the window's file by an empty one.
      return
    directory = partition_dir(self._output, self._spec.name, day)
    path = FileSystems.join(directory, file_name(window.start.micros, pane.index, shard, self._job))
    make_dirs(directory)
    table = to_arrow(self._spec, rows, self._indices)
    if path.startswith('s3://'):
      # An S3 object appears whole when its upload completes.
      with FileSystems.create(path) as stream:
        pq.write_table(table, stream, compression='zstd')
    else:
      # A reader listing the folder while the file is written saw it half
      # written (DuckDB: "too small to be a Parquet file"). Hidden, unique and
      # without the .parquet suffix until it is whole, then renamed over any
      # earlier copy (a replay after a restore).
      partial = FileSystems.join(directory, f'.{uuid.uuid4().hex}.inprogress')
      with FileSystems.create(partial) as stream:
        pq.write_table(table, stream, compression='zstd')
      FileSystems.rename([partial], [path])
    self.count(accounting.TABLE_ROWS, self._spec.name, len(rows))
    yield WrittenFile(self._spec.name, day, path, len(rows))


class WriteWindowedTable(beam.PTransform):
  """Streaming rows of one table to windowed, deterministically named Parquet files.

  ``job``: the id in the names of the files (see the module docstring).
  """

  def __init__(
    self,
    spec: TableSpec,
    output: str,
    window_s: float = DEFAULT_WINDOW_S,
    shards: int = DEFAULT_FILE_SHARDS,
    job: str = '',
  ):
    super().__init__()
    if window_s <= 0 or shards < 1:
      raise ValueError('file window must be positive and file shards at least 1')
    self._spec = spec
    self._output = output
    self._window_s = window_s
    self._shards = shards
    self._job = job

  def expand(self, rows):
    return (
      rows
      | 'KeyByDayAndShard'
      >> beam.ParDo(_KeyByDayAndShard(self._spec, self._shards)).with_output_types(
        tuple[tuple[str, int], self._spec.row_type]
      )
      | 'FileWindows'
      >> beam.WindowInto(
        window.FixedWindows(self._window_s),
        trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
        accumulation_mode=trigger.AccumulationMode.DISCARDING,
        allowed_lateness=Duration(seconds=ALLOWED_LATENESS_S),
      )
      | 'GroupPerFile' >> beam.GroupByKey()
      | 'WriteWindowFile'
      >> beam.ParDo(_WriteWindowFile(self._spec, self._output, self._job)).with_output_types(
        WrittenFile
      )
    )
