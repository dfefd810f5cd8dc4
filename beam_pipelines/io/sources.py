"""Batch inputs: ``--source KIND=PATH_OR_GLOB`` specs and reading them line by line.

specs = [parse_source_spec('access-log=/data/access.log*')]
files = expand_inputs(specs)            # fails fast when nothing matches
records = p | ReadLines(files)          # RawRecords, one per line
"""

from __future__ import annotations

import gzip
import itertools
import logging
import os
import sys
import time
import zlib
from collections.abc import Iterator
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

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
KINDS = EVENT_KINDS + ORDER_KINDS + DIMENSION_KINDS
STEP = 'read_lines'
_PROGRESS_EVERY_LINES = 20_000


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


def open_input(path: str):
  """(the raw stream, the stream to read lines from: gunzipped for .gz); close both."""
  raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
  return raw, (gzip.GzipFile(fileobj=raw, mode='rb') if path.endswith('.gz') else raw)


_BLOCK_BYTES = 1 << 16


def line_blocks(stream) -> Iterator[list[bytes]]:
  """The stream's lines, without their line ends, a list per block read.

  The lines are those of iterating the stream (split at b'\\n', trailing b'\\r'
  removed), cut in C a block at a time: reading line by line was most of the
  reader's time (measured). A block is one buffer (read1), so a corrupt
  compressed file still yields every line before the buffer that fails.
  """
  read = getattr(stream, 'read1', stream.read)
  pending: list[bytes] = []  # the pieces of a line whose end is not read yet
  while block := read(_BLOCK_BYTES):
    if b'\n' not in block:
      pending.append(block)  # kept in pieces: a long line is not copied per block
      continue
    lines = block.split(b'\n')
    if pending:
      lines[0] = b''.join(pending) + lines[0]
    pending = [lines.pop()]
    yield [line.rstrip(b'\r') for line in lines]
  last = b''.join(pending)
  if last:
    yield [last.rstrip(b'\r')]


def fixed_records(stream, record_length: int):
  """Records back to back with no separator (EBCDIC exports); the last may be short."""
  while True:
    record = stream.read(record_length)
    if not record:
      return
    yield record


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
    records = (
      itertools.chain.from_iterable(line_blocks(stream))
      if record_length is None
      else fixed_records(stream, record_length)
    )
    for position, line in enumerate(records, 1):
      record = RawRecord(file.source, position, line, file.mtime_us)
      try:
        check_size(record)
        yield record, parse(record)
      except (RecordFiltered, RecordError) as outcome:
        yield record, outcome
  finally:
    stream.close()
    raw.close()


class _ReadFileLines(beam.DoFn):
  """One InputFile to one RawRecord per line (or per fixed-length record), or
  to LineChunks of up to ``chunk_lines`` RawRecords; an unreadable rest is a dead letter."""

  def __init__(
    self, show_progress: bool, record_length: Optional[int], chunk_lines: Optional[int] = None
  ):
    self._show_progress = show_progress
    self._record_length = record_length
    self._chunk_lines = chunk_lines

  def process(self, file: InputFile) -> Iterator:
    chunk = LineChunk()
    for records in self._record_lists(file):
      if isinstance(records, pvalue.TaggedOutput):
        yield records
      elif self._chunk_lines is None:
        yield from records
      else:
        chunk.extend(records)
        if len(chunk) >= self._chunk_lines:
          yield chunk
          chunk = LineChunk()
    if chunk:
      yield chunk

  def _record_lists(self, file: InputFile) -> Iterator:
    """Lists of RawRecords, a block read at a time, then a dead letter if the rest is unreadable."""
    source, mtime_us = file.source, file.mtime_us
    raw, stream = open_input(file.path)
    started = time.monotonic()
    progress = self._progress_bar(file)
    position = 0
    try:
      blocks = (
        line_blocks(stream)
        if self._record_length is None
        else ([record] for record in fixed_records(stream, self._record_length))
      )
      for lines in blocks:
        first = position + 1
        yield [RawRecord(source, n, line, mtime_us) for n, line in enumerate(lines, first)]
        position += len(lines)
        if progress is not None and position % _PROGRESS_EVERY_LINES < len(lines):
          progress.update(raw.tell() - progress.n)
    except (EOFError, OSError, zlib.error) as e:
      # A truncated or corrupt compressed file: keep what was read, report the rest.
      accounting.count(accounting.READ, source)
      yield pvalue.TaggedOutput(
        DEAD_LETTER_TAG,
        DeadLetter(
          payload=b'',
          reason='unreadable_input',
          detail=f'input unreadable after line {position}: {e}',
          step=STEP,
          source=source,
          position=str(position + 1),
          event_time=None,
          input_time=mtime_us,
        ),
      )
    finally:
      stream.close()
      if progress is not None:
        progress.update(file.size - progress.n)
        progress.close()
      # Without a terminal this log line (shopstream -v) is the progress report.
      _LOGGER.info('read %s: %d records in %.1f s', file.path, position, time.monotonic() - started)

  def _progress_bar(self, file: InputFile):
    if not (self._show_progress and sys.stderr.isatty()):
      return None
    from tqdm import tqdm

    return tqdm(
      total=file.size,
      desc=file.path.rsplit('/', 1)[-1][-30:],
      unit='B',
      unit_scale=True,
      leave=False,
      file=sys.stderr,
    )


class ReadLines(beam.PTransform):
  """PBegin to RawRecords (main) and DeadLetters (DEAD_LETTER_TAG) of the files.

  With ``chunk_lines`` the main output holds LineChunks of up to that many
  RawRecords, for parsers that work a chunk at a time (ParseChunks).
  """

  def __init__(
    self,
    files: list[InputFile],
    show_progress: bool = False,
    record_length: Optional[int] = None,
    chunk_lines: Optional[int] = None,
  ):
    super().__init__()
    self._files = files
    self._show_progress = show_progress
    self._record_length = record_length
    self._chunk_lines = chunk_lines

  def expand(self, pbegin):
    main_type = LineChunk if self._chunk_lines else RawRecord
    outputs = (
      pbegin
      | 'ListFiles' >> beam.Create(self._files)
      | 'ReadFileLines'
      >> beam.ParDo(_ReadFileLines(self._show_progress, self._record_length, self._chunk_lines))
      .with_output_types(main_type)
      .with_outputs(DEAD_LETTER_TAG, main='records')
    )
    return typed_outputs(outputs, **{DEAD_LETTER_TAG: DeadLetter})
