"""Parsing LineChunks: each chunk's records as one Arrow table, its dead letters one by one.

A chunk parser (parse/event_chunks.py, parse/access_log_chunks.py) decodes
most of a chunk as columns in Arrow kernels, which release the GIL; so chunks
may be parsed on a small thread pool (pooled_dofn.py), and the second core of
an in-process run parses while the first runs Python.

    chunks | ParseLineChunks({'access-log': (parser, 'parse_access_log')}, Event, 'events')
    chunks | ParseRecordChunks('taxonomy', parser, 'parse_taxonomy', Category, 'parsed')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import NamedTuple, Union

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from transforms import accounting
from transforms.dead_letters import DeadLetter, ParseFn, kind_of_source, record_outcome
from transforms.event_batches import from_batch, to_batch
from transforms.pooled_dofn import PooledDoFn
from transforms.records import DEAD_LETTER_TAG, LineChunk

# Fewer records than this go to the line parser whole. A chunk parser makes dozens
# of Arrow calls whose cost does not shrink with the chunk (each compiles its pattern
# anew, and pyarrow 16 looks for pandas on every Python value): 6-17 ms a chunk,
# against 0.01-0.03 ms a record for the line parsers, which were still 1.3-4x faster
# at 256 events, access-log or order lines (measured on a loaded machine). Small
# chunks are the ends of files and byte ranges, and small files (dimension files,
# the fixtures of most tests).
FEWEST_FOR_COLUMNS = 256


class ChunkOutcome(NamedTuple):
  """What one chunk gave: tables of parsed records, dead letters, and its counts."""

  tables: list[pa.Table]
  dead_letters: list[DeadLetter]
  counts: accounting.Counts


def parse_chunk(
  chunk: LineChunk,
  parsers: Mapping[str, tuple[ParseFn, str]],
  record_type: type,
  fewest_for_columns: int = FEWEST_FOR_COLUMNS,
) -> ChunkOutcome:
  """Parses one chunk with the parser of its kind, touching no Beam state (safe on any thread).

  A parse function with a ``parse_chunk(chunk)`` method parses most lines as
  columns and leaves the rest to itself as a line parser; any other, and any
  chunk of fewer than ``fewest_for_columns`` lines, parses each line.
  """
  parse, step = parsers[kind_of_source(chunk.source)]
  counts = accounting.Counts()
  tables: list[pa.Table] = []
  chunk_parser = getattr(parse, 'parse_chunk', None)
  if chunk_parser is None or len(chunk.lines) < fewest_for_columns:
    rest = chunk.records()
  else:
    parsed_chunk = chunk_parser(chunk)
    counts.count(accounting.READ, chunk.source, len(chunk.lines) - len(parsed_chunk.rest))
    for reason, n in parsed_chunk.filtered.items():
      counts.count(accounting.FILTERED, chunk.source, n)
      counts.count(accounting.FILTERED_REASON, reason, n)
    if parsed_chunk.table.num_rows:
      tables.append(parsed_chunk.table)
    rest = parsed_chunk.rest
  parsed, dead_letters = [], []
  for record in rest:
    outcome = record_outcome(counts, record, parse, step)
    if isinstance(outcome, DeadLetter):
      dead_letters.append(outcome)
    elif outcome is not None:
      parsed.append(outcome)
  if parsed:
    tables.append(pa.Table.from_batches([to_batch(record_type, parsed)]))
  return ChunkOutcome(tables, dead_letters, counts)


class ParseChunks(PooledDoFn):
  """parse_chunk over LineChunks, on ``threads`` threads (pooled_dofn.py).

  ``parsers`` maps each input kind (kind_of_source) to its (parse function,
  step).
  """

  def __init__(
    self,
    parsers: Mapping[str, tuple[ParseFn, str]],
    record_type: type,
    threads: int = 1,
    fewest_for_columns: int = FEWEST_FOR_COLUMNS,
  ):
    super().__init__(threads)
    self._parsers = dict(parsers)
    self._record_type = record_type
    self._fewest_for_columns = fewest_for_columns

  def work(self, chunk: LineChunk) -> ChunkOutcome:
    return parse_chunk(chunk, self._parsers, self._record_type, self._fewest_for_columns)

  def emit(self, outcome: ChunkOutcome) -> Iterator[Union[pa.Table, pvalue.TaggedOutput]]:
    self.add_counts(outcome.counts)
    yield from outcome.tables
    for letter in outcome.dead_letters:
      yield pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)


class ParseLineChunks(beam.PTransform):
  """LineChunks (ReadLines with chunk_bytes) of the kinds ``parsers`` names (kind ->
  (parse function, step)) to tables of parsed records on ``main_tag`` and DeadLetters
  on DEAD_LETTER_TAG."""

  def __init__(
    self,
    parsers: Mapping[str, tuple[ParseFn, str]],
    record_type: type,
    main_tag: str,
    threads: int = 1,
    fewest_for_columns: int = FEWEST_FOR_COLUMNS,
  ):
    super().__init__()
    self._dofn = ParseChunks(parsers, record_type, threads, fewest_for_columns)
    self._main_tag = main_tag

  def expand(self, chunks):
    outputs = chunks | 'ParseChunks' >> beam.ParDo(self._dofn).with_output_types(
      pa.Table
    ).with_outputs(DEAD_LETTER_TAG, main=self._main_tag)
    outputs[DEAD_LETTER_TAG].element_type = DeadLetter
    return outputs


class ParseRecordChunks(beam.PTransform):
  """ParseLineChunks of one kind whose records go on one by one, as the steps after it take
  them (orders, the product dimension: few records next to the events): records on
  ``main_tag``, DeadLetters on DEAD_LETTER_TAG."""

  def __init__(
    self, kind: str, parser: ParseFn, step: str, record_type: type, main_tag: str, threads=1
  ):
    super().__init__()
    self._parse = ParseLineChunks({kind: (parser, step)}, record_type, main_tag, threads)
    self._record_type = record_type
    self._main_tag = main_tag

  def expand(self, chunks):
    outputs = chunks | 'ParseChunks' >> self._parse
    records = outputs[self._main_tag] | 'Records' >> beam.FlatMap(
      partial(from_batch, self._record_type)
    ).with_output_types(self._record_type)
    return {self._main_tag: records, DEAD_LETTER_TAG: outputs[DEAD_LETTER_TAG]}
