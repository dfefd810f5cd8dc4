import os

import apache_beam as beam
import duckdb

from beam_pipelines.io import parquet_sink, table_store, tables
from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event


def write_events(output, events, run_id):
  with beam_pipeline() as p:
    written = p | beam.Create(events) | parquet_sink.WriteTable(tables.EVENTS, output, run_id)
    _ = written | parquet_sink.StageManifest(output, run_id)
  assert table_store.for_output(output).publish_staged(run_id)


def read(output, table):
  return (
    duckdb.connect()
    .execute(
      f"select event_id, dt::varchar from read_parquet('{output}/{table}/*/*.parquet', "
      'hive_partitioning=true) order by event_id'
    )
    .fetchall()
  )


def test_partitions_by_utc_day_and_replaces_only_what_a_run_writes(tmp_path):
  output = str(tmp_path)
  day = 24 * 60
  write_events(output, [make_event('a', 0), make_event('b', day), make_event('c', day + 1)], 'r1')
  assert read(output, 'events') == [('a', '2026-03-01'), ('b', '2026-03-02'), ('c', '2026-03-02')]
  # A second run over day 2 only replaces day 2 whole; day 1 stays.
  write_events(output, [make_event('d', day + 2)], 'r2')
  assert read(output, 'events') == [('a', '2026-03-01'), ('d', '2026-03-02')]
  assert sorted(os.listdir(output)) == ['events']  # staging is cleaned up
  assert len(os.listdir(os.path.join(output, 'events', 'dt=2026-03-02'))) == 1


def test_schema_types(tmp_path):
  output = str(tmp_path)
  write_events(output, [make_event('a', 0, price='19.99', quantity=2, is_bot=True)], 'r1')
  row = (
    duckdb.connect()
    .execute(
      f'select typeof(event_time), typeof(price), price::varchar, quantity, is_bot, '
      f"epoch_us(event_time) from read_parquet('{output}/events/*/*.parquet')"
    )
    .fetchone()
  )
  assert row[:5] == ('TIMESTAMP WITH TIME ZONE', 'DECIMAL(18,4)', '19.9900', 2, True)
  assert row[5] == make_event('a', 0).event_time


def test_a_day_the_run_owns_is_emptied_when_it_has_no_rows_now(tmp_path):
  output = str(tmp_path)
  day = 24 * 60
  write_events(output, [make_event('a', 0), make_event('b', day)], 'r1')
  # A backfill's day run for day 2 that finds no rows there any more:
  with beam_pipeline() as p:
    written = p | beam.Create([]).with_output_types(parquet_sink.WrittenFile)
    _ = written | parquet_sink.StageManifest(output, 'r2', ['events', 'sessions'], ['2026-03-02'])
  assert table_store.for_output(output).publish_staged('r2')
  assert read(output, 'events') == [('a', '2026-03-01')]
  assert sorted(os.listdir(os.path.join(output, 'events'))) == ['dt=2026-03-01']
