import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import NOW_US, beam_pipeline
from tests.golden import assert_matches_golden, outcomes
from transforms import dead_letters
from transforms.event_batches import from_batch
from transforms.parse import parse_line_chunks
from transforms.parse.parse_events import EventLineParser, ParseEventsJsonl
from transforms.records import DEAD_LETTER_TAG, EVENTS_TAG, Event, LineChunk, RawRecord

SOURCE = 'events-jsonl:fixtures/events.jsonl'


def test_golden_fixture():
  results = outcomes(EventLineParser('EUR', NOW_US), 'events.jsonl', SOURCE)
  assert_matches_golden(results, 'events.golden.json')
  # The golden file is reviewed; these are the facts it must keep showing.
  by_line = {r['line']: r for r in results}
  assert by_line[2]['event']['event_type'] == 'product_view'  # 'View' synonym
  assert by_line[3]['event']['currency'] == 'USD'
  assert '"coupon":"SPRING10"' in by_line[3]['event']['properties']
  assert by_line[6] == {'line': 6, 'filtered': 'blank_line'}
  assert by_line[7]['dead_letter'] == 'invalid_json'
  assert by_line[8]['dead_letter'] == 'not_an_object'
  assert by_line[9]['dead_letter'] == 'event_time_without_offset'
  assert by_line[11]['dead_letter'] == 'unknown_event_type,missing_identity'
  assert by_line[11]['event_time'] == 1_772_359_200_000_000
  assert by_line[12]['event']['anonymous_id'] == '42'
  assert by_line[13]['dead_letter'] == 'invalid_utf8'


def test_oversized_records_are_dead_letters_with_a_cut_payload():
  record = RawRecord(SOURCE, 1, b'{"x": "' + b'a' * (dead_letters.MAX_RECORD_BYTES + 10) + b'"}', 0)
  error = None
  try:
    dead_letters.check_size(record)
  except dead_letters.RecordError as e:
    error = e
  assert error is not None and error.reason == 'record_too_large'
  letter = dead_letters.make_dead_letter(record, error, 'test')
  assert len(letter.payload) == dead_letters.KEPT_PAYLOAD_BYTES
  assert 'cut to its first' in letter.detail


def test_pipeline_routes_events_and_dead_letters():
  lines = [
    b'{"event_id":"e1","event_type":"cart","event_time":1772359200,"user_id":"u1"}',
    b'\xff\xfe garbage',
    b'',
  ]
  with beam_pipeline() as p:
    records = p | beam.Create([RawRecord(SOURCE, n, line, 7) for n, line in enumerate(lines, 1)])
    parsed = records | ParseEventsJsonl('EUR', NOW_US)
    assert_that(
      parsed[EVENTS_TAG] | 'Ids' >> beam.Map(lambda e: (e.event_id, e.event_type)),
      equal_to([('e1', 'add_to_cart')]),
      label='events',
    )
    assert_that(
      parsed[DEAD_LETTER_TAG]
      | 'Letters'
      >> beam.Map(lambda d: (d.payload, d.reason, d.step, d.source, d.position, d.input_time)),
      equal_to([(b'\xff\xfe garbage', 'invalid_utf8', 'parse_events_jsonl', SOURCE, '2', 7)]),
      label='dead letters',
    )


def test_without_a_fixed_now_each_record_is_bounded_by_its_arrival():
  """A stream's parser (now_us None) judges each record against its input_time."""
  day_us = 86_400 * 1_000_000
  arrival = NOW_US + 7 * day_us  # a week after the stream started

  def record(ahead_us: int) -> RawRecord:
    line = b'{"event_type": "page_view", "event_time": %d, "anonymous_id": "a"}' % (
      (arrival + ahead_us) // 1_000_000
    )
    return RawRecord('kinesis:s', 1, line, arrival)

  stream_parser = EventLineParser('EUR', None)
  assert stream_parser(record(60_000_000)).event_time == arrival + 60_000_000
  with pytest.raises(dead_letters.RecordError) as fixed_now:
    EventLineParser('EUR', NOW_US)(record(60_000_000))  # the old, build-time bound
  assert fixed_now.value.reason == 'clock_skew'
  with pytest.raises(dead_letters.RecordError) as skewed:
    stream_parser(record(2 * day_us))
  assert skewed.value.reason == 'clock_skew'


def test_a_chunk_parses_to_the_records_and_letters_of_its_lines_one_by_one():
  lines = [
    b'{"event_type":"view","event_time":1772362800,"anonymous_id":"a1"}',
    b'not json',
    b'',
    b'{"event_type":"purchase","event_time":"2026-03-01T10:00:00Z","user_id":"u","price":"9.5"}',
    b'{"event_type":"teleport","event_time":1772362800,"anonymous_id":"a1"}',
  ]
  chunk = [RawRecord(SOURCE, n, line, 0) for n, line in enumerate(lines, 1)]
  parse = EventLineParser('EUR', NOW_US)

  def run(dofn, elements):
    dofn.setup()
    dofn.start_bundle()
    out = [o for element in elements for o in dofn.process(element)]
    dofn.finish_bundle()
    return out

  one_by_one = run(dead_letters.ParseRecords(parse, 'step'), chunk)
  chunked = run(
    parse_line_chunks.ParseChunks({'events-jsonl': (parse, 'step')}, Event, threads=1),
    [LineChunk.of_records(chunk)],
  )
  tables = [o for o in chunked if isinstance(o, pa.Table)]
  assert len(tables) == 1
  assert from_batch(Event, tables[0]) == [o for o in one_by_one if isinstance(o, Event)]
  letters = [o.value for o in one_by_one if isinstance(o, beam.pvalue.TaggedOutput)]
  assert [o.value for o in chunked if isinstance(o, beam.pvalue.TaggedOutput)] == letters
  assert [letter.position for letter in letters] == ['2', '5']
