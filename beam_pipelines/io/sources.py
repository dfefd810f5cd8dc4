"""Batch inputs: ``--source KIND=PATH_OR_GLOB`` specs and reading them line by line.

specs = [parse_source_spec('access-log=/data/access.log*')]
files = expand_inputs(specs)            # fails fast when nothing matches
records = p | ReadLines(files)          # RawRecords, one per line
"""

from __future__ import annotations

import gzip
import logging
import os
import sys
import time
import zlib
from collections.abc import Iterator
from typing import NamedTuple, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.io.csv_records import RecordArray, csv_record_arrays
from beam_pipelines.io.file_ranges import (
  RANGE_BYTES,
  FileRange,
  RangeStream,
  is_splittable,
  plan_ranges,
)
from transforms import accounting
from transforms.enrich.pseudonymize import Pseudonymizer, salt_from_environment
from transforms.event_time import US_PER_SECOND
from transforms.records import DEAD_LETTER_TAG, DeadLetter, LineChunk, RawRecord, typed_outputs

_LOGGER = logging.getLogger(__name__)

EVENTS_JSONL = 'events-jsonl'
ACCESS_LOG = 'access-log'
ORDERS_CSV = 'orders-csv'
ORDERS_FIXED = 'orders-fixed'
CATALOG_CSV = 'catalog-csv'
TAXONOMY = 'taxonomy'
EVENT_KINDS = (EVENTS_JSONL, ACCESS_LOG)
ORDER_KINDS = (ORDERS_CSV, ORDERS_FIXED)
DIMENSION_KINDS = (CATALOG_CSV, TAXONOMY)
# Kinds whose quoted fields may hold line breaks (csv_records.py).
CSV_KINDS = (ORDERS_CSV, CATALOG_CSV)
KINDS = EVENT_KINDS + ORDER_KINDS + DIMENSION_KINDS
STEP = 'read_lines'


class SourceSpec(NamedTuple):
  kind: str
  pattern: str


class InputFile(NamedTuple):
  kind: str
  path: str
  size: int
  mtime_us: int

  @property
  def source(self) -> str:
    """The run summary's key for this input."""
    return f'{self.kind}:{self.path}'


# In a folder `shopstream generate` wrote (synthetic data), beside its files.
GENERATED_SAMPLE_MARKER = '.shopstream-generated-sample'


def only_generated_samples(paths: list[str]) -> bool:
  """Whether there are paths and each lies in a local folder `shopstream generate` wrote."""
  return bool(paths) and all(
    FileSystems.get_scheme(path) in (None, 'file')
    and os.path.exists(os.path.join(os.path.dirname(path), GENERATED_SAMPLE_MARKER))
    for path in paths
  )


def pseudonymizer_for(files: list[InputFile]) -> Pseudonymizer:
  """The run's Pseudonymizer: the environment's salt, or the public default when every
  input is a generated sample (else MissingSaltError)."""
  paths = [f.path for f in files]
  return Pseudonymizer(salt_from_environment(allow_default=only_generated_samples(paths)))


def parse_source_spec(text: str) -> SourceSpec:
  """``KIND=PATH_OR_GLOB`` to a SourceSpec; ValueError says what is wrong."""
  kind, sep, pattern = text.partition('=')
  if not sep or not pattern.strip():
    raise ValueError(f'--source {text!r} must look like KIND=PATH_OR_GLOB')
  kind = kind.strip()
  if kind not in KINDS:
    raise ValueError(f'--source {text!r}: unknown kind {kind!r}; known kinds: {", ".join(KINDS)}')
  return SourceSpec(kind, pattern.strip())


def expand_inputs(specs: list[SourceSpec]) -> list[InputFile]:
  """The files each spec matches, sorted; ValueError when a spec matches none."""
  files: dict[tuple[str, str], InputFile] = {}
  for spec in specs:
    try:
      metadata = FileSystems.match([spec.pattern])[0].metadata_list
    except Exception as e:  # Beam wraps every filesystem error in its own types
      raise ValueError(f'--source {spec.kind}={spec.pattern}: cannot list input: {e}') from e
    matched = [m for m in metadata if not m.path.endswith('/')]
    if not matched:
      raise ValueError(f'--source {spec.kind}={spec.pattern}: no file matches')
    for m in matched:
      files[(spec.kind, m.path)] = InputFile(
        spec.kind, m.path, m.size_in_bytes, int(m.last_updated_in_seconds * US_PER_SECOND)
      )
  return sorted(files.values())


# Gzip shrinks event lines and logs about 12x (a generated sample: 17 MB of
# .gz files for 178 MB of lines). The estimate only steers the bucket count.
GZIP_EXPANSION = 10


def estimated_input_bytes(files: list[InputFile]) -> int:
  """About how many bytes of lines the files hold: a .gz file counts GZIP_EXPANSION
  times its size."""
  return sum(f.size * (GZIP_EXPANSION if f.path.endswith('.gz') else 1) for f in files)


def open_input(path: str):
  """(the raw stream, the stream to read lines from: gunzipped for .gz); close both."""
  raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
  return raw, (gzip.GzipFile(fileobj=raw, mode='rb') if path.endswith('.gz') else raw)


_READ_BYTES = 1 << 16
_FIXED_RECORDS_PER_ARRAY = 10_000
# Lines of a chunk the parsers take as columns: ~15-20k event or log lines,
# enough that per-chunk costs vanish, few enough that a chunk stays a few MB.
CHUNK_BYTES = 1 << 22
_NEWLINE, _CARRIAGE_RETURN = ord('\n'), ord('\r')


def split_lines(data: bytes, final: bool) -> tuple[pa.BinaryArray, bytes]:
  """(the complete lines of ``data`` as one array, the unfinished rest).

  A line ends at b'\\n'; neither it nor the b'\\r's before it are kept, as
  when iterating the file and stripping b'\\r\\n'. With ``final`` the rest is
  the last line and is returned in the array (rest b''). Cut in numpy: no
  Python object per line.
  """
  buffer = np.frombuffer(data, np.uint8)
  ends = np.flatnonzero(buffer == _NEWLINE)
  rest = data[ends[-1] + 1 :] if len(ends) else data
  if final and rest:
    ends, rest = np.append(ends, len(buffer)), b''
  starts = np.zeros(len(ends), np.int64)
  starts[1:] = ends[:-1] + 1
  complete = buffer[: len(buffer) - len(rest)]
  if data.find(b'\r', 0, len(complete)) < 0:
    offsets = np.zeros(len(ends) + 1, np.int32)
    offsets[1:] = ends - np.arange(len(ends))  # each line's end, less the b'\\n's before it
    # bytes.replace is a C loop over the buffer: 3x faster than numpy's mask (measured).
    body = data[: len(complete)].replace(b'\n', b'')
  else:
    # Where each line's trailing run of b'\\r' begins: after its last other byte.
    positions = np.arange(len(buffer), dtype=np.int64)
    last_other = np.maximum.accumulate(np.where(buffer == _CARRIAGE_RETURN, -1, positions))
    before_end = last_other[np.maximum(ends - 1, 0)] + 1
    kept_ends = np.where(ends > starts, np.maximum(before_end, starts), starts)
    offsets = np.concatenate([[0], np.cumsum(kept_ends - starts)]).astype(np.int32)
    # The bytes of each line's [start, kept end): +1 where one begins, -1 where it stops.
    steps = np.zeros(len(buffer) + 1, np.int8)
    steps[starts] += 1
    steps[kept_ends] -= 1
    body = buffer[np.cumsum(steps[:-1], dtype=np.int8) > 0]
  lines = pa.BinaryArray.from_buffers(
    pa.binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(body)]
  )
  return lines, rest


def line_arrays(stream, chunk_bytes: int = CHUNK_BYTES) -> Iterator[pa.BinaryArray]:
  """The stream's lines (split_lines) as arrays of about ``chunk_bytes`` each.

  Read 64 KiB at a time (read1), so a corrupt compressed file still yields
  every line before the buffer that fails, then raises as the read did.
  """
  read = getattr(stream, 'read1', stream.read)
  pieces: list[bytes] = []
  size = 0
  while True:
    try:
      block = read(_READ_BYTES)
    except Exception:
      if pieces:
        lines, _ = split_lines(b''.join(pieces), final=False)
        if len(lines):
          yield lines
      raise
    if not block:
      break
    pieces.append(block)
    size += len(block)
    if size >= chunk_bytes and b'\n' in block:
      lines, rest = split_lines(b''.join(pieces), final=False)
      yield lines
      pieces, size = [rest], len(rest)
  lines, _ = split_lines(b''.join(pieces), final=True)
  if len(lines):
    yield lines


def fixed_records(stream, record_length: int):
  """Records back to back with no separator (EBCDIC exports); the last may be short."""
  while True:
    record = stream.read(record_length)
    if not record:
      return
    yield record


def fixed_record_arrays(stream, record_length: int) -> Iterator[pa.BinaryArray]:
  """fixed_records as arrays of up to 10,000 records. A stream that fails mid-way (a
  corrupt gzip) first yields the records read before the failure, then raises."""
  batch: list[bytes] = []
  try:
    for record in fixed_records(stream, record_length):
      batch.append(record)
      if len(batch) == _FIXED_RECORDS_PER_ARRAY:
        yield pa.array(batch, pa.binary())
        batch = []
  except Exception:
    if batch:
      yield pa.array(batch, pa.binary())
    raise
  if batch:
    yield pa.array(batch, pa.binary())


def record_arrays(
  stream, kind: str, record_length: Optional[int] = None, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[RecordArray]:
  """The records of a stream of one kind, an array at a time: lines, fixed-length records
  (a position counts them), or for the CSV kinds CSV records, which may span lines."""
  if record_length is not None:
    return (
      RecordArray(records, len(records)) for records in fixed_record_arrays(stream, record_length)
    )
  arrays = line_arrays(stream, chunk_bytes)
  if kind in CSV_KINDS:
    return csv_record_arrays(arrays)
  return (RecordArray(lines, len(lines)) for lines in arrays)


def record_parsers(opts, layout, pseudonymizer, now_us: int) -> dict[str, tuple]:
  """kind -> (parse function, fixed record length or None): the batch path's parsers for use
  outside Beam (backfill span scans, replays). orders-fixed only with a ``layout``.
  """
  from transforms.parse.parse_access_log import AccessLogParser
  from transforms.parse.parse_events import EventLineParser
  from transforms.parse.parse_fixed_orders import FixedWidthOrdersParser
  from transforms.parse.parse_orders import OrdersCsvParser

  parsers = {
    EVENTS_JSONL: (EventLineParser(opts.default_currency, now_us), None),
    ACCESS_LOG: (AccessLogParser(pseudonymizer, now_us), None),
    ORDERS_CSV: (
      OrdersCsvParser(pseudonymizer, opts.orders_timezone, opts.default_currency, now_us),
      None,
    ),
  }
  if layout is not None:
    parsers[ORDERS_FIXED] = (
      FixedWidthOrdersParser(
        layout,
        opts.fixed_encoding or layout.encoding,
        pseudonymizer,
        opts.orders_timezone,
        opts.default_currency,
        now_us,
      ),
      None if layout.newline else layout.record_length,
    )
  return parsers


def parse_file(file: InputFile, parse, record_length: Optional[int] = None) -> Iterator[tuple]:
  """(RawRecord, outcome) for each record of a file, outside Beam (plans, reloads, replays).

  The outcome is the parsed record, or the RecordFiltered / RecordError the
  batch path would count or dead-letter. A corrupt compressed file raises
  (EOFError, OSError or zlib.error) where its readable part ends.
  """
  from transforms.dead_letters import RecordError, RecordFiltered, check_size

  raw, stream = open_input(file.path)
  try:
    position = 1
    for records, spanned, line_offsets in record_arrays(stream, file.kind, record_length):
      chunk = LineChunk(file.source, position, file.mtime_us, records, line_offsets)
      for record in chunk.records():
        try:
          check_size(record)
          yield record, parse(record)
        except (RecordFiltered, RecordError) as outcome:
          yield record, outcome
      position += spanned
  finally:
    stream.close()
    raw.close()


def file_ranges(file: InputFile, range_bytes: Optional[int]) -> list[tuple[InputFile, FileRange]]:
  """(file, range) of each byte range of a file (file_ranges.py); one without ``range_bytes``
  or for a CSV kind."""
  if range_bytes is None or file.kind in CSV_KINDS:
    return [(file, FileRange(0, file.size, 1))]
  ranges = plan_ranges(file.path, file.size, lambda: open_input(file.path)[0], range_bytes)
  return [(file, r) for r in ranges]


class _ReadFileLines(beam.DoFn):
  """One (InputFile, FileRange) to one RawRecord per line (per fixed-length record, per CSV
  record), or to LineChunks of about ``chunk_bytes`` each; an unreadable rest is a dead
  letter."""

  def __init__(
    self, show_progress: bool, record_length: Optional[int], chunk_bytes: Optional[int] = None
  ):
    self._show_progress = show_progress
    self._record_length = record_length
    self._chunk_bytes = chunk_bytes

  def process(self, file_range: tuple[InputFile, FileRange]) -> Iterator:
    file, _ = file_range
    source, mtime_us = file.source, file.mtime_us
    for first, records in self._line_arrays(*file_range):
      if isinstance(records, pvalue.TaggedOutput):
        yield records
        continue
      chunk = LineChunk(source, first, mtime_us, records.records, records.line_offsets)
      if self._chunk_bytes is not None:
        yield chunk
      else:
        yield from chunk.records()

  def _line_arrays(self, file: InputFile, byte_range: FileRange) -> Iterator:
    """(position of the first, a RecordArray) a chunk at a time, then a dead letter if the
    rest is unreadable."""
    source = file.source
    raw, stream = open_input(file.path)
    if (byte_range.start, byte_range.end) != (0, file.size):
      stream = RangeStream(raw, byte_range.start, byte_range.end)
    started = time.monotonic()
    progress = self._progress_bar(file, byte_range)
    position = byte_range.first_line - 1
    # A position counts lines, or records in a fixed-length export without line ends.
    unit = 'line' if self._record_length is None else 'record'
    try:
      arrays = record_arrays(
        stream, file.kind, self._record_length, self._chunk_bytes or CHUNK_BYTES
      )
      for records in arrays:
        yield position + 1, records
        position += records.lines
        if progress is not None:
          progress.update(raw.tell() - byte_range.start - progress.n)
    except (EOFError, OSError, zlib.error) as e:
      # A truncated or corrupt compressed file: keep what was read, report the rest.
      accounting.count(accounting.READ, source)
      yield (
        None,
        pvalue.TaggedOutput(
          DEAD_LETTER_TAG,
          DeadLetter(
            payload=b'',
            reason='unreadable_input',
            detail=f'input unreadable after {unit} {position}: {e}',
            step=STEP,
            source=source,
            position=str(position + 1),
            event_time=None,
            input_time=file.mtime_us,
          ),
        ),
      )
    finally:
      stream.close()
      if progress is not None:
        progress.update(progress.total - progress.n)
        progress.close()
      # Without a terminal this log line (shopstream -v) is the progress report.
      _LOGGER.info(
        'read %s [%d, %d): %d %ss in %.1f s',
        file.path,
        byte_range.start,
        byte_range.end,
        position - byte_range.first_line + 1,
        unit,
        time.monotonic() - started,
      )

  def _progress_bar(self, file: InputFile, byte_range: FileRange):
    if not (self._show_progress and sys.stderr.isatty()):
      return None
    from tqdm import tqdm

    return tqdm(
      total=byte_range.end - byte_range.start,
      desc=file.path.rsplit('/', 1)[-1][-30:],
      unit='B',
      unit_scale=True,
      leave=False,
      file=sys.stderr,
    )


class ReadLines(beam.PTransform):
  """PBegin to RawRecords (main) and DeadLetters (DEAD_LETTER_TAG) of the files.

  With ``chunk_bytes`` the main output holds LineChunks of about that many
  bytes of lines, for parsers that work a chunk at a time (ParseChunks).
  Uncompressed files above ``range_bytes`` are read as byte ranges
  (file_ranges.py) spread over the workers; fixed-length records never are,
  nor CSV kinds, whose records may span lines (a range could start inside one).
  """

  def __init__(
    self,
    files: list[InputFile],
    show_progress: bool = False,
    record_length: Optional[int] = None,
    chunk_bytes: Optional[int] = None,
    range_bytes: int = RANGE_BYTES,
  ):
    super().__init__()
    self._files = files
    self._show_progress = show_progress
    self._record_length = record_length
    self._chunk_bytes = chunk_bytes
    self._range_bytes = None if record_length else range_bytes

  def expand(self, pbegin):
    main_type = LineChunk if self._chunk_bytes else RawRecord
    splits = self._splits()
    ranges = (
      pbegin
      # Create's own reshuffle spreads the files over the workers; where the
      # ranges are spread below it would be a second shuffle of the same work.
      | 'ListFiles' >> beam.Create(self._files, reshuffle=not splits)
      | 'PlanRanges'
      >> beam.FlatMap(file_ranges, self._range_bytes if splits else None).with_output_types(
        tuple[InputFile, FileRange]
      )
    )
    if splits:
      # Else every range of a file stays with the worker that planned them.
      ranges = ranges | 'SpreadRanges' >> beam.Reshuffle()
    outputs = ranges | 'ReadFileLines' >> beam.ParDo(
      _ReadFileLines(self._show_progress, self._record_length, self._chunk_bytes)
    ).with_output_types(main_type).with_outputs(DEAD_LETTER_TAG, main='records')
    return typed_outputs(outputs, **{DEAD_LETTER_TAG: DeadLetter})

  def _splits(self) -> bool:
    """Whether a file is big enough for ranges: else no planning read and no extra shuffle."""
    return self._range_bytes is not None and any(
      f.kind not in CSV_KINDS and is_splittable(f.path) and f.size > self._range_bytes
      for f in self._files
    )
