"""ParseLineChunks: the same tables, dead letters and counts on one thread or several."""

import os

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import NOW_US, beam_pipeline
from transforms import accounting
from transforms.event_batches import from_batch
from transforms.parse import parse_access_log, parse_events
from transforms.parse.access_log_chunks import AccessLogChunkParser
from transforms.parse.event_chunks import EventChunkParser
from transforms.parse.parse_line_chunks import (
  FEWEST_FOR_COLUMNS,
  ParseChunks,
  ParseLineChunks,
  parse_chunk,
)
from transforms.records import DEAD_LETTER_TAG, EVENTS_TAG, Event, LineChunk, RawRecord

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
LINES_PER_CHUNK = 7
# Chunks this small go to the line parser by default: these tests hold the column path.
COLUMNS = {'fewest_for_columns': 1}


def fixture_chunks(kind: str, name: str) -> list[LineChunk]:
  """The fixture's lines as chunks of LINES_PER_CHUNK, numbered from 1 as ReadLines does."""
  source = f'{kind}:{os.path.join(FIXTURES, name)}'
  with open(os.path.join(FIXTURES, name), 'rb') as f:
    lines = f.read().split(b'\n')
  records = [RawRecord(source, n, line, NOW_US) for n, line in enumerate(lines, 1)]
  return [
    LineChunk.of_records(records[start : start + LINES_PER_CHUNK])
    for start in range(0, len(records), LINES_PER_CHUNK)
  ]


@pytest.fixture
def parsers(pseudonymizer):
  return {
    'events-jsonl': (EventChunkParser('EUR', NOW_US), parse_events.STEP),
    'access-log': (AccessLogChunkParser(pseudonymizer, NOW_US), parse_access_log.STEP),
  }


@pytest.fixture
def chunks():
  return fixture_chunks('events-jsonl', 'events.jsonl') + fixture_chunks('access-log', 'access.log')


def one_by_one(chunks, parsers, fewest_for_columns=1):
  """Every chunk's outcome, parsed in order on this thread, without Beam (by default the
  chunk parsers' column path, whatever a chunk's size)."""
  events, letters, counts = [], [], accounting.Counts()
  for chunk in chunks:
    outcome = parse_chunk(chunk, parsers, Event, fewest_for_columns)
    events += [event for table in outcome.tables for event in from_batch(Event, table)]
    letters += outcome.dead_letters
    for (kind, subject), n in outcome.counts.items():
      counts.count(kind, subject, n)
  return events, letters, counts


def test_every_line_of_a_chunk_is_read_once_and_has_one_outcome(chunks, parsers):
  events, letters, counts = one_by_one(chunks, parsers)
  lines = sum(len(chunk.lines) for chunk in chunks)
  read = sum(n for (kind, _), n in counts.items() if kind == accounting.READ)
  filtered = sum(n for (kind, _), n in counts.items() if kind == accounting.FILTERED)
  assert read == lines
  assert len(events) + len(letters) + filtered == lines
  assert events and letters and filtered  # the fixtures have all three outcomes


@pytest.mark.parametrize('threads', [1, 3])
def test_a_pipeline_gives_the_same_rows_letters_and_counts_on_any_number_of_threads(
  chunks, parsers, threads
):
  events, letters, counts = one_by_one(chunks, parsers)
  p = beam_pipeline()
  outputs = (
    p
    | beam.Create(chunks, reshuffle=False)
    | ParseLineChunks(parsers, Event, EVENTS_TAG, threads=threads, **COLUMNS)
  )
  rows = outputs[EVENTS_TAG] | beam.FlatMap(lambda table: from_batch(Event, table))
  assert_that(rows, equal_to(events), label='Events')
  assert_that(outputs[DEAD_LETTER_TAG], equal_to(letters), label='DeadLetters')
  result = p.run()
  result.wait_until_finish()
  found = {
    tuple(metric.key.metric.name.split(accounting.SEPARATOR, 1)): metric.committed
    for metric in result.metrics().query(MetricsFilter().with_namespace(accounting.NAMESPACE))[
      'counters'
    ]
  }
  assert found == dict(counts)


def test_a_failing_parser_fails_the_bundle_on_a_pool_thread_too(chunks, parsers):
  class Broken:
    def parse_chunk(self, chunk):
      raise RuntimeError('parser bug')

  dofn = ParseChunks({**parsers, 'events-jsonl': (Broken(), 'step')}, Event, 2, **COLUMNS)
  dofn.setup()
  dofn.start_bundle()
  with pytest.raises(RuntimeError, match='parser bug'):
    for chunk in chunks:
      list(dofn.process(chunk))
    list(dofn.finish_bundle())
  dofn.teardown()


def test_a_chunk_of_few_lines_goes_to_the_line_parser_with_the_same_outcome(chunks, parsers):
  class ColumnsRefused:
    """The event parser as a line parser; its column path must not be asked."""

    def __call__(self, record):
      return parsers['events-jsonl'][0](record)

    def parse_chunk(self, chunk):
      raise AssertionError(f'a chunk of {len(chunk.lines)} lines took the column path')

  assert all(len(chunk.lines) < FEWEST_FOR_COLUMNS for chunk in chunks)
  by_line = {**parsers, 'events-jsonl': (ColumnsRefused(), parsers['events-jsonl'][1])}
  events, letters, counts = one_by_one(chunks, by_line, fewest_for_columns=FEWEST_FOR_COLUMNS)
  column_events, column_letters, column_counts = one_by_one(chunks, parsers)
  # The column path hands on a chunk's column-decided events before the rest.
  assert sorted(events, key=repr) == sorted(column_events, key=repr)
  assert letters == column_letters
  assert dict(counts) == dict(column_counts)
