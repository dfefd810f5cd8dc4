"""--table-format iceberg: the same rows as Parquet, published in one atomic commit a table.

The referees: DuckDB's iceberg extension reads the tables a run committed and
compares them with the Parquet twin of the same run; on S3 (moto's server)
a reader polling during a publish sees the old partition or the new one and
nothing between, and a publish that dies before its commit leaves the old
table as it was.
"""

from __future__ import annotations

import threading
import time

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Transaction
from pyiceberg.utils.config import Config

from beam_pipelines import cli
from beam_pipelines.cli import report
from beam_pipelines.io import iceberg_tables, table_store, tables
from beam_pipelines.io.parquet_sink import WrittenFile
from beam_pipelines.io.tables import ALL_TABLES, TableSpec
from tests.beam_pipelines.stored_tables import (
  duckdb_with_iceberg,
  iceberg_metadata,
  read_stored,
  stored_rows,
)
from tests.conftest import sample_run_flags

DAYS = ('2026-03-01', '2026-03-02', '2026-03-03')
BUCKET = 'shopstream-iceberg'
ICEBERG = ['--table-format', 'iceberg']


@pytest.fixture(scope='module', autouse=True)
def _salt(module_salt):
  pass


@pytest.fixture(scope='module')
def inputs(tmp_path_factory) -> list[str]:
  return sample_run_flags(tmp_path_factory.mktemp('inputs'), seed=11)


@pytest.fixture(scope='module')
def other_inputs(tmp_path_factory) -> list[str]:
  """Other events on the same days: every partition differs from ``inputs``'."""
  return sample_run_flags(tmp_path_factory.mktemp('other-inputs'), seed=12)


@pytest.fixture(scope='module')
def twins(inputs, tmp_path_factory) -> tuple[str, str]:
  """(Parquet output, Iceberg output) of one run each over the same inputs."""
  parquet = str(tmp_path_factory.mktemp('parquet'))
  iceberg = str(tmp_path_factory.mktemp('iceberg'))
  assert cli.main(['run', *inputs, '--output', parquet]) == 0
  assert cli.main(['run', *inputs, '--output', iceberg, *ICEBERG]) == 0
  return parquet, iceberg


def parquet_source(output: str, table: str) -> str:
  hive = str(ALL_TABLES[table].partitioned).lower()
  return (
    f"read_parquet('{output}/{table}/**/*.parquet', hive_partitioning = {hive}, "
    'hive_types_autocast = false)'
  )


def test_every_iceberg_table_holds_its_parquet_twins_rows(twins):
  parquet, iceberg = twins
  con = duckdb_with_iceberg()
  for table in ALL_TABLES:
    expected = con.execute(f'select * from {parquet_source(parquet, table)} order by all')
    expected_rows = expected.fetchall()
    scan = f"iceberg_scan('{iceberg_metadata(iceberg, table)}')"
    assert expected_rows, f'the sample gives {table} rows'
    assert con.execute(f'select * from {scan} order by all').fetchall() == expected_rows, table


def test_the_output_records_its_format_and_the_report_reads_it(twins):
  parquet, iceberg = twins
  assert table_store.recorded_settings(iceberg) == {
    'table_format': 'iceberg',
    'catalog': 'shopstream',
    'namespace': 'shopstream',
  }
  assert table_store.recorded_settings(parquet) is None
  page = report.build_report(iceberg)
  assert page.replace(iceberg, 'OUT') == report.build_report(parquet).replace(parquet, 'OUT')


def metadata_versions(output: str, table: str) -> int:
  catalog = iceberg_tables.load_catalog(output, 'shopstream')
  return len(catalog.load_table(f'shopstream.{table}').metadata.metadata_log)


def test_a_backfill_replaces_its_day_in_one_commit_per_table_as_parquet_does(
  inputs, other_inputs, tmp_path
):
  parquet, iceberg = str(tmp_path / 'parquet'), str(tmp_path / 'iceberg')
  assert cli.main(['run', *inputs, '--output', parquet, '--derived-tables', 'never']) == 0
  assert cli.main(['run', *inputs, '--output', iceberg, '--derived-tables', 'never', *ICEBERG]) == 0
  first_day = stored_rows(iceberg, 'events', where=f"dt = '{DAYS[0]}'")
  versions = {table: metadata_versions(iceberg, table) for table in tables.TABLES}
  old_snapshot = iceberg_tables.load_catalog(iceberg, 'shopstream').load_table('shopstream.events')
  old_day = old_snapshot.scan(row_filter=EqualTo('dt', DAYS[1])).to_arrow()

  # The backfill's flags name no format: it follows what the output records.
  for output in (parquet, iceberg):
    backfill = ['backfill', '--from', DAYS[1], '--to', DAYS[1], *other_inputs, '--output', output]
    assert cli.main(backfill) == 0

  for table in tables.TABLES:
    assert stored_rows(iceberg, table) == stored_rows(parquet, table), table
    assert metadata_versions(iceberg, table) == versions[table] + 1, table
  assert stored_rows(iceberg, 'events', where=f"dt = '{DAYS[0]}'") == first_day
  new_day = stored_rows(iceberg, 'events', 'event_id', f"dt = '{DAYS[1]}'")
  assert {row[0] for row in new_day} != set(old_day['event_id'].to_pylist())
  # The old snapshot is still there to read (time travel).
  catalog = iceberg_tables.load_catalog(iceberg, 'shopstream')
  events = catalog.load_table('shopstream.events')
  before = events.scan(
    row_filter=EqualTo('dt', DAYS[1]), snapshot_id=old_snapshot.current_snapshot().snapshot_id
  )
  assert before.to_arrow().sort_by('event_id').equals(old_day.sort_by('event_id'))


def test_formats_cannot_be_mixed_in_one_output(twins, inputs, tmp_path, capsys):
  parquet, iceberg = twins
  assert cli.main(['run', *inputs, '--output', parquet, *ICEBERG]) == 2
  assert 'holds Parquet tables' in capsys.readouterr().err
  assert cli.main(['run', *inputs, '--output', iceberg, '--table-format', 'parquet']) == 2
  assert 'holds Iceberg tables' in capsys.readouterr().err
  assert cli.main(['run', *inputs, '--output', iceberg, '--iceberg-namespace', 'other']) == 2
  assert "in namespace 'shopstream', not 'other'" in capsys.readouterr().err


def test_a_stream_into_an_iceberg_output_is_refused(twins, capsys):
  _, iceberg = twins
  flags = ['run', '--kinesis-stream', 'clicks', '--output', iceberg, '--max-records', '1']
  assert cli.main(flags) == 2
  assert '--table-format iceberg is for batch runs' in capsys.readouterr().err


def test_an_object_store_output_needs_a_configured_catalog(monkeypatch):
  monkeypatch.delenv('PYICEBERG_CATALOG__SHOPSTREAM__URI', raising=False)
  with pytest.raises(ValueError, match='PYICEBERG_CATALOG__SHOPSTREAM__TYPE=glue'):
    iceberg_tables.load_catalog('s3://bucket/tables', 'shopstream')


# --- One commit, unit by unit (a SQLite catalog in a temporary folder) ---------------------

SMALL = TableSpec(
  'small',
  pa.schema([('id', pa.string()), ('amount', tables.MONEY)]),
  tuple,
  lambda row: row[0],
)
SNAPSHOT = TableSpec('snapshot', pa.schema([('id', pa.string())]), tuple, tables._unpartitioned)


def stage(folder, spec: TableSpec, day, ids) -> WrittenFile:
  path = f'{folder}/{spec.name}-{day}-{"".join(ids)}.parquet'
  columns = {'id': ids}
  if 'amount' in spec.schema.names:
    columns['amount'] = pa.array([None] * len(ids), tables.MONEY)
  pq.write_table(pa.table(columns, schema=spec.schema), path)
  return WrittenFile(spec.name, day, path, len(ids))


def contents(table) -> dict:
  rows = table.refresh().scan().to_arrow().to_pylist()
  found: dict = {}
  for row in rows:
    found.setdefault(row.get('dt'), set()).add(row['id'])
  return found


def test_replace_swaps_written_days_empties_owned_days_and_keeps_the_rest(tmp_path):
  catalog = iceberg_tables.load_catalog(str(tmp_path), 'unit')
  table = iceberg_tables.open_table(catalog, 'ns', SMALL, str(tmp_path))
  iceberg_tables.replace(
    table, SMALL, [stage(tmp_path, SMALL, d, [f'{d[-1]}a', f'{d[-1]}b']) for d in DAYS]
  )
  assert contents(table) == {'2026-03-01': {'1a', '1b'}, '2026-03-02': {'2a', '2b'},
                             '2026-03-03': {'3a', '3b'}}  # fmt: skip
  versions = len(table.metadata.metadata_log)
  iceberg_tables.replace(table, SMALL, [stage(tmp_path, SMALL, DAYS[1], ['2c'])], [DAYS[2]])
  assert contents(table) == {'2026-03-01': {'1a', '1b'}, '2026-03-02': {'2c'}}
  assert len(table.metadata.metadata_log) == versions + 1  # one commit

  iceberg_tables.replace(table, SMALL, [stage(tmp_path, SMALL, DAYS[2], ['3d'])], whole=True)
  assert contents(table) == {'2026-03-03': {'3d'}}


def test_a_snapshot_table_is_replaced_whole(tmp_path):
  catalog = iceberg_tables.load_catalog(str(tmp_path), 'unit')
  table = iceberg_tables.open_table(catalog, 'ns', SNAPSHOT, str(tmp_path))
  iceberg_tables.replace(table, SNAPSHOT, [stage(tmp_path, SNAPSHOT, None, ['a', 'b'])], whole=True)
  iceberg_tables.replace(table, SNAPSHOT, [stage(tmp_path, SNAPSHOT, None, ['c'])], whole=True)
  assert contents(table) == {None: {'c'}}
  iceberg_tables.replace(table, SNAPSHOT, [], whole=True)
  assert contents(table) == {}


def test_a_column_added_to_a_table_is_added_to_its_iceberg_table(tmp_path):
  catalog = iceberg_tables.load_catalog(str(tmp_path), 'unit')
  older = SMALL._replace(schema=pa.schema([('id', pa.string())]))
  table = iceberg_tables.open_table(catalog, 'ns', older, str(tmp_path))
  iceberg_tables.replace(table, older, [stage(tmp_path, older, DAYS[0], ['old'])])
  table = iceberg_tables.open_table(catalog, 'ns', SMALL, str(tmp_path))
  iceberg_tables.replace(table, SMALL, [stage(tmp_path, SMALL, DAYS[1], ['new'])])
  rows = sorted(table.refresh().scan().to_arrow().to_pylist(), key=lambda row: row['id'])
  assert [(row['id'], row['amount'], row['dt']) for row in rows] == [
    ('new', None, DAYS[1]),
    ('old', None, DAYS[0]),
  ]
  assert [field.name for field in table.schema().fields] == ['id', 'dt', 'amount']


# --- On S3: readers during a publish, and a publish that dies before its commit ------------


def s3_output(monkeypatch, tmp_path, s3_endpoint, settings: dict) -> list[str]:
  """Flags for an Iceberg output on moto's S3, its catalog configured the way a user
  would: pyiceberg's environment variables."""
  s3 = boto3.client('s3', endpoint_url=s3_endpoint, region_name='us-east-1')
  if BUCKET not in [b['Name'] for b in s3.list_buckets()['Buckets']]:
    s3.create_bucket(Bucket=BUCKET)
  settings = {
    **settings,
    'S3__ENDPOINT': s3_endpoint,
    'S3__ACCESS_KEY_ID': 'testing',
    'S3__SECRET_ACCESS_KEY': 'testing',
    'S3__REGION': 'us-east-1',
  }
  for key, value in settings.items():
    monkeypatch.setenv(f'PYICEBERG_CATALOG__SHOPSTREAM__{key}', value)
  output = f's3://{BUCKET}/{tmp_path.name}'
  return [
    '--output',
    output,
    '--s3_endpoint_url',
    s3_endpoint,
    *ICEBERG,
    '--derived-tables',
    'never',
  ]


@pytest.fixture
def s3_tables(monkeypatch, tmp_path, s3_endpoint, aws_credentials) -> list[str]:
  """An S3 output with a SQL catalog on SQLite."""
  settings = {'URI': f'sqlite:///{tmp_path}/catalog.db'}
  return s3_output(monkeypatch, tmp_path, s3_endpoint, settings)


@pytest.fixture
def glue_tables(monkeypatch, tmp_path, s3_endpoint, aws_credentials) -> list[str]:
  """An S3 output with AWS Glue as its catalog (moto's), set as `deploy emr --iceberg` sets
  it on EMR, and pointed at the emulator."""
  settings = {'TYPE': 'glue', 'GLUE__REGION': 'us-east-1', 'GLUE__ENDPOINT': s3_endpoint}
  return s3_output(monkeypatch, tmp_path, s3_endpoint, settings)


def s3_catalog():
  return load_catalog('shopstream', **Config().get_catalog_config('shopstream'))


def day_ids(catalog, table: str, day: str) -> frozenset:
  scan = catalog.load_table(f'shopstream.{table}').scan(
    row_filter=EqualTo('dt', day), selected_fields=('event_id',)
  )
  return frozenset(scan.to_arrow()['event_id'].to_pylist())


def test_a_reader_during_a_publish_sees_the_old_partition_or_the_new_one(
  inputs, other_inputs, s3_tables, monkeypatch
):
  assert cli.main(['run', *inputs, *s3_tables]) == 0
  old = day_ids(s3_catalog(), 'events', DAYS[1])
  window: list[float] = []
  replace = iceberg_tables.replace

  def slow_replace(*args, **kwargs):
    # Tables commit one by one: a pause before each keeps the publish open for
    # the reader long enough to look many times while it runs.
    window.append(time.monotonic())
    time.sleep(0.4)
    replace(*args, **kwargs)
    window.append(time.monotonic())

  monkeypatch.setattr(iceberg_tables, 'replace', slow_replace)
  seen: list[tuple[float, frozenset]] = []
  stop = threading.Event()

  def read_until_stopped():
    reader = s3_catalog()
    while not stop.is_set():
      seen.append((time.monotonic(), day_ids(reader, 'events', DAYS[1])))

  thread = threading.Thread(target=read_until_stopped)
  thread.start()
  try:
    assert cli.main(['run', *other_inputs, *s3_tables]) == 0
  finally:
    stop.set()
    thread.join()
  new = day_ids(s3_catalog(), 'events', DAYS[1])
  assert old and new and old != new
  assert {ids for _, ids in seen} <= {old, new}, 'a reader saw a partition half replaced'
  during = [ids for at, ids in seen if window[0] <= at <= window[-1]]
  assert len(during) >= 3, 'the reader looked while the tables were published'
  assert {ids for _, ids in seen} == {old, new}


def test_a_publish_that_dies_before_its_commit_leaves_the_old_table(
  inputs, other_inputs, s3_tables, s3_endpoint, monkeypatch, tmp_path
):
  assert cli.main(['run', *inputs, *s3_tables]) == 0
  catalog = s3_catalog()
  old = {day: day_ids(catalog, 'events', day) for day in DAYS}
  old_files = {
    task.file.file_path for task in catalog.load_table('shopstream.events').scan().plan_files()
  }
  commit = Transaction.commit_transaction

  def dies_at_the_events_commit(self):
    if self._table.name()[-1] == 'events':
      raise SystemExit('killed between writing the data files and the commit')
    return commit(self)

  monkeypatch.setattr(Transaction, 'commit_transaction', dies_at_the_events_commit)
  with pytest.raises(SystemExit):
    cli.main(['run', *other_inputs, *s3_tables])
  monkeypatch.setattr(Transaction, 'commit_transaction', commit)

  catalog = s3_catalog()
  assert {day: day_ids(catalog, 'events', day) for day in DAYS} == old
  events = catalog.load_table('shopstream.events')
  assert {task.file.file_path for task in events.scan().plan_files()} == old_files
  # The dead process had written its data files: there, but in no snapshot.
  prefix = events.location().removeprefix(f's3://{BUCKET}/') + '/data/'
  s3 = boto3.client('s3', endpoint_url=s3_endpoint, region_name='us-east-1')
  stored = {
    f's3://{BUCKET}/{o["Key"]}'
    for page in s3.get_paginator('list_objects_v2').paginate(Bucket=BUCKET, Prefix=prefix)
    for o in page.get('Contents', [])
  }
  assert stored - old_files, 'the new data files were written before the commit failed'

  # Run again: the tables are those of the same two runs into Parquet, with no crash.
  assert cli.main(['run', *other_inputs, *s3_tables]) == 0
  reference = str(tmp_path / 'reference')
  for flags in (inputs, other_inputs):
    assert cli.main(['run', *flags, '--output', reference, '--derived-tables', 'never']) == 0
  catalog = s3_catalog()
  for table in tables.TABLES:
    assert catalog_rows(catalog, table) == parquet_rows(reference, table), table


def catalog_rows(catalog, table: str) -> list[str]:
  return sorted(map(repr, catalog.load_table(f'shopstream.{table}').scan().to_arrow().to_pylist()))


def parquet_rows(output: str, table: str) -> list[str]:
  return sorted(map(repr, read_stored(output, table).to_pylist()))


def test_a_glue_catalog_holds_the_tables_of_a_run(twins, inputs, glue_tables, s3_endpoint):
  parquet, _ = twins
  assert cli.main(['run', *inputs, *glue_tables]) == 0
  glue = boto3.client('glue', endpoint_url=s3_endpoint, region_name='us-east-1')
  registered = glue.get_tables(DatabaseName='shopstream')['TableList']
  assert {t['Name'] for t in registered} == set(tables.TABLES)
  assert {t['Parameters']['table_type'] for t in registered} == {'ICEBERG'}
  catalog = s3_catalog()
  for table in tables.TABLES:
    assert catalog_rows(catalog, table) == parquet_rows(parquet, table), table
