import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event
from transforms.sessions.deduplicate import DeduplicateEvents, deduplicate, keep_first


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


def test_pipeline_drops_duplicates_across_inputs():
  first = [make_event('x', 0), make_event('y', 1)]
  second = [make_event('x', 0), make_event('z', 2)]
  with beam_pipeline() as p:
    out = (
      p | 'First' >> beam.Create(first),
      p | 'Second' >> beam.Create(second),
    ) | DeduplicateEvents(num_buckets=4)
    assert_that(out | beam.Map(lambda e: e.event_id), equal_to(['x', 'y', 'z']))
