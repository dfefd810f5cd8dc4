"""The streaming sink: windowed files whose names and bytes a retry reproduces."""

from __future__ import annotations

import os

import apache_beam as beam
import duckdb
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from beam_pipelines.io import tables
from beam_pipelines.io.streaming_sink import WriteWindowedTable, file_name, row_sort_key
from tests.conftest import beam_pipeline
from tests.transforms.helpers import MINUTE_US, T0, make_event

WINDOW_S = 600


def timestamped(events):
  return [TimestampedValue(e, e.event_time / 1e6) for e in events]


def write(output, events, shards=2, job=''):
  with beam_pipeline() as p:
    _ = (
      p
      | beam.Create(timestamped(events))
      | WriteWindowedTable(tables.EVENTS, str(output), WINDOW_S, shards, job)
    )


def files(output) -> dict[str, bytes]:
  found = {}
  for folder, _, names in os.walk(output):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        found[os.path.relpath(path, output)] = f.read()
  return found


def event_ids(output) -> list[tuple]:
  return (
    duckdb.connect()
    .execute(
      f"select event_id, dt::varchar from read_parquet('{output}/events/*/*.parquet', "
      'hive_partitioning=true) order by event_id'
    )
    .fetchall()
  )


def test_file_names_say_window_pane_and_shard():
  assert file_name(T0, 0, 1) == 'w20260301T100000Z-p0000-s001.parquet'
  assert file_name(T0, 3, 0) != file_name(T0, 0, 3)
  assert file_name(MIN_TIMESTAMP.micros, 0, 0) == 'w19700101T000000Z-p0000-s000.parquet'


def test_a_job_id_names_the_files_of_one_job():
  assert file_name(T0, 0, 1, 'j1') == 'w20260301T100000Z-p0000-s001-jj1.parquet'


def test_a_second_job_writing_the_same_window_keeps_the_first_jobs_files(tmp_path):
  write(tmp_path, [make_event('first', 1)], shards=1, job='20261204T210000-ab12')
  write(tmp_path, [make_event('second', 2)], shards=1, job='20261204T213000-cd34')
  assert [event_id for event_id, _ in event_ids(tmp_path)] == ['first', 'second']


def test_row_sort_key_orders_rows_with_none():
  rows = [('b', None), ('a', 2), ('a', None), (None, 1)]
  assert sorted(rows, key=row_sort_key) == [(None, 1), ('a', None), ('a', 2), ('b', None)]


def test_rows_land_in_one_file_per_window_day_and_shard(tmp_path):
  # 10-minute windows: minutes 0-9, 10-19, and one event past midnight (day 2).
  events = [make_event(f'e{n}', n * 3) for n in range(7)] + [make_event('late-day', 14 * 60 + 5)]
  write(tmp_path, events, shards=1)
  assert event_ids(tmp_path) == sorted(
    (e.event_id, '2026-03-02' if e.event_id == 'late-day' else '2026-03-01') for e in events
  )
  # Every file under its final name: none left half written or hidden.
  assert sorted(files(tmp_path)) == [
    'events/dt=2026-03-01/w20260301T100000Z-p0000-s000.parquet',
    'events/dt=2026-03-01/w20260301T101000Z-p0000-s000.parquet',
    'events/dt=2026-03-02/w20260302T000000Z-p0000-s000.parquet',
  ]


def test_a_redone_write_reproduces_the_same_files_byte_for_byte(tmp_path):
  """What a runner's retry does: the same rows, in another order, written again."""
  events = [make_event(f'e{n:03d}', n * 0.7, key=f'k{n % 5}') for n in range(300)]
  write(tmp_path / 'first', events)
  write(tmp_path / 'again', list(reversed(events)))
  first, again = files(tmp_path / 'first'), files(tmp_path / 'again')
  assert len(first) > 4 and first == again
  write(tmp_path / 'first', events)  # over the existing files: still one copy of each row
  assert files(tmp_path / 'first') == first
  assert [event_id for event_id, _ in event_ids(tmp_path / 'first')] == sorted(
    e.event_id for e in events
  )


def test_rows_behind_the_watermark_go_to_a_late_pane_not_lost(tmp_path):
  on_time = [make_event('on-time', 1)]
  late = [make_event(f'late{n}', 2 + n) for n in range(3)]
  stream = (
    BeamTestStream()
    .add_elements(timestamped(on_time))
    .advance_watermark_to(Timestamp(micros=T0 + 30 * MINUTE_US))
    .add_elements(timestamped(late))
    .advance_watermark_to(Timestamp(micros=T0 + 60 * MINUTE_US))
    .advance_watermark_to_infinity()
  )
  options = PipelineOptions()
  options.view_as(StandardOptions).streaming = True
  with BeamTestPipeline(runner='DirectRunner', options=options) as p:
    _ = p | stream | WriteWindowedTable(tables.EVENTS, str(tmp_path), WINDOW_S, 1)
  # Every file under its final name: none left half written or hidden.
  assert sorted(files(tmp_path)) == [
    'events/dt=2026-03-01/w20260301T100000Z-p0000-s000.parquet',
    'events/dt=2026-03-01/w20260301T100000Z-p0001-s000.parquet',
  ]
  assert event_ids(tmp_path) == [
    (event_id, '2026-03-01') for event_id in ('late0', 'late1', 'late2', 'on-time')
  ]
