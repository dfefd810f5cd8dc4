"""Small Event builders for transform tests."""

from functools import partial

import apache_beam as beam

from transforms.event_batches import from_batch
from transforms.records import Event

MINUTE_US = 60 * 1_000_000
T0 = 1_772_359_200_000_000  # 2026-03-01T10:00:00Z


def make_event(event_id: str, minute: float, key: str = 'a1', **fields) -> Event:
  """An enriched-looking event ``minute`` minutes after T0."""
  values = dict.fromkeys(Event._fields)
  values.update(
    event_id=event_id,
    event_type='page_view',
    event_time=T0 + round(minute * MINUTE_US),
    anonymous_id=key,
    source='test',
  )
  values.update(fields)
  return Event(**values)


def table_rows(record_type: type):
  """A step from the Arrow tables a columnar transform emits to their records."""
  return beam.FlatMap(partial(from_batch, record_type)).with_output_types(record_type)
