import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event
from transforms.event_batches import to_batch
from transforms.records import Event
from transforms.sessions.bucketed_grouping import (
  GroupIntoBuckets,
  bucket_of,
  bucket_records,
  bucket_table,
  buckets_of_column,
  key_hash,
  key_hashes,
)


def test_bucket_is_stable_across_processes():
  # Fixed values: a salted hash() would differ between workers.
  assert key_hash('a1') == 14146523556926521770
  assert bucket_of('a1', 16) == 10
  assert all(0 <= bucket_of(str(n), 7) < 7 for n in range(100))


@given(st.lists(st.one_of(st.text(), st.none())), st.integers(0, 5), st.integers(0, 5))
def test_a_column_hashes_as_its_values_one_by_one(keys, start, stop):
  column = pa.array(keys, pa.string()).slice(start, max(0, len(keys) - start - stop))
  assert key_hashes(column).tolist() == [key_hash(k or '') for k in column.to_pylist()]
  chunked = pa.chunked_array([column, column], pa.string())
  assert key_hashes(chunked).tolist() == key_hashes(column).tolist() * 2


def test_distinct_keys_spread_evenly():
  counts = np.bincount(buckets_of_column(pa.array([f'evt-{n:09d}' for n in range(16_000)]), 16))
  assert counts.min() > 850 and counts.max() < 1150  # 1,000 each, binomial sd ~31


def test_equal_keys_meet_in_one_bucket():
  events = [make_event(f'e{n}', n, key=f'k{n % 5}') for n in range(40)]

  def keys_per_bucket(bucket):
    number, batches = bucket
    return number, sorted({e.anonymous_id for e in bucket_records(batches, Event)})

  with beam_pipeline() as p:
    grouped = (
      p | 'A' >> beam.Create(events[:20]),
      p | 'B' >> beam.Create(events[20:]),
    ) | GroupIntoBuckets(lambda e: e.anonymous_id, num_buckets=3, record_type=Event)
    expected = {}
    for n in range(5):
      expected.setdefault(bucket_of(f'k{n}', 3), []).append(f'k{n}')
    assert_that(
      grouped | beam.Map(keys_per_bucket),
      equal_to([(b, sorted(keys)) for b, keys in expected.items()]),
    )


def test_windowed_input_is_refused():
  with pytest.raises(ValueError, match='global window'):
    with beam_pipeline() as p:
      _ = (
        p
        | beam.Create([1])
        | beam.WindowInto(FixedWindows(60))
        | GroupIntoBuckets(str, num_buckets=2)
      )


def test_tables_and_records_of_a_key_meet_in_the_same_bucket():
  events = [make_event(f'e{n}', n, key=f'k{n % 7}') for n in range(70)]
  as_table = pa.Table.from_batches([to_batch(Event, events[35:])])
  buckets = buckets_of_column(as_table['anonymous_id'], 4)
  assert buckets.tolist() == [bucket_of(e.anonymous_id, 4) for e in events[35:]]

  def keys_per_bucket(bucket):
    number, batches = bucket
    return number, sorted(bucket_table(batches, Event)['event_id'].to_pylist())

  with beam_pipeline() as p:
    grouped = (
      p | 'Rows' >> beam.Create(events[:35]),
      p | 'Table' >> beam.Create([as_table]).with_output_types(pa.Table),
    ) | GroupIntoBuckets(lambda e: e.anonymous_id, 4, Event, lambda t: t['anonymous_id'])
    expected = {}
    for e in events:
      expected.setdefault(bucket_of(e.anonymous_id, 4), []).append(e.event_id)
    assert_that(
      grouped | beam.Map(keys_per_bucket),
      equal_to([(b, sorted(ids)) for b, ids in expected.items()]),
    )
