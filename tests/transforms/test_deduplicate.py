import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event, table_rows
from transforms.event_batches import from_batch, to_batch
from transforms.records import Event
from transforms.sessions.deduplicate import (
  DeduplicateEvents,
  deduplicate,
  deduplicate_table,
  keep_first,
)


def test_one_event_per_id_in_first_seen_order():
  events = [make_event('x', 5), make_event('y', 1), make_event('x', 5), make_event('x', 5)]
  result = list(deduplicate(events))
  assert [kept.event_id for kept, _ in result] == ['x', 'y']
  assert [len(dropped) for _, dropped in result] == [2, 0]


def test_the_kept_copy_does_not_depend_on_order_or_source():
  early = make_event('x', 1, source='b')
  late = make_event('x', 2, source='a')
  other_source = make_event('x', 1, source='a')
  other_page = make_event('x', 1, page_url='https://shop.example/a')
  assert keep_first([late, early]) is early
  # Where a copy was read is no column: equal rows tie, the first stays.
  assert keep_first([early, other_source]) is early
  assert keep_first([other_source, early]) is other_source
  assert keep_first([early, other_page]) is keep_first([other_page, early])


@pytest.mark.parametrize('threads', [1, 2])
def test_pipeline_drops_duplicates_across_inputs(threads):
  first = [make_event('x', 0), make_event('y', 1)]
  second = [make_event('x', 0), make_event('z', 2)]
  with beam_pipeline() as p:
    out = (
      p | 'First' >> beam.Create(first),
      p | 'Second' >> beam.Create(second),
    ) | DeduplicateEvents(num_buckets=4, threads=threads)
    assert_that(out | table_rows(Event) | beam.Map(lambda e: e.event_id), equal_to(['x', 'y', 'z']))


def test_the_table_form_keeps_what_the_record_form_keeps():
  events = [
    make_event('x', 1, page_url='/late-copy'),
    make_event('y', 2),
    make_event('x', 0, source='other-file'),
    make_event('z', 3),
    make_event('x', 0),
    make_event('y', 2, source='retry'),
  ]
  kept, dropped = deduplicate_table(pa.Table.from_batches([to_batch(Event, events)]))
  expected = [first for first, _ in deduplicate(events)]
  assert sorted(from_batch(Event, kept)) == sorted(expected)
  assert sorted(dropped) == sorted(
    copy.source for _, copies in deduplicate(events) for copy in copies
  )
  assert len(dropped) == 3


def test_the_table_form_passes_a_table_without_copies_as_it_is():
  events = [make_event('a', 0), make_event('b', 1)]
  table = pa.Table.from_batches([to_batch(Event, events)])
  kept, dropped = deduplicate_table(table)
  assert kept.equals(table) and dropped == []


_copy = st.tuples(
  st.sampled_from(['x', 'y', 'z', 'w']),  # event_id: few, so that ids repeat
  st.integers(0, 2),  # minute
  st.sampled_from([None, '/a', '/b']),  # page_url, null or not
  st.sampled_from([None, True, False]),  # is_bot
  st.sampled_from(['file-1', 'file-2', 'retry']),  # source: no column, never weighed
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_copy, max_size=14))
def test_the_table_form_keeps_exactly_what_keep_first_keeps(copies):
  """Ids whose copies are all equal take the column path, the others keep_first: either
  way the same kept rows (sources included) and the same dropped sources."""
  events = [
    make_event(event_id, minute, page_url=page_url, is_bot=is_bot, source=source)
    for event_id, minute, page_url, is_bot, source in copies
  ]
  kept, dropped = deduplicate_table(pa.Table.from_batches([to_batch(Event, events)]))
  by_record = list(deduplicate(events))
  assert sorted(from_batch(Event, kept), key=repr) == sorted(
    (first for first, _ in by_record), key=repr
  )
  assert sorted(dropped) == sorted(copy.source for _, others in by_record for copy in others)
