"""shopstream on a real Flink 1.19: a standalone JobManager and TaskManager.

`make install` puts Flink, Beam's Flink job server and the boot binary into
.tools/ (beam_pipelines/local_flink.py). Each test runs `shopstream run` with
runner_configs/flink_local.yaml against the cluster and compares every table
with the DirectRunner's over the same input, in DuckDB; one runs the SDK
harness as EMR does (PROCESS, through deploy/emr/bootstrap.sh's boot wrapper).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import boto3
import duckdb
import pytest

from beam_pipelines import cli, local_flink, tables
from beam_pipelines.local_flink import LocalFlinkCluster
from beam_pipelines.sample_data import GeneratorConfig, generate
from beam_pipelines.streaming_pipeline import json_event_time

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON = ['--reference-time', '2026-06-01T00:00:00Z', '--progress', 'never']
DERIVED = ('interactions', 'item_pairs', 'customers', 'session_sequences')
SNAPSHOTS = ('interactions', 'item_pairs', 'customers')  # unpartitioned


@pytest.fixture(scope='module')
def flink():
  with LocalFlinkCluster(task_slots=4) as cluster:
    yield cluster


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  folder = tmp_path_factory.mktemp('flink-in')
  generate(GeneratorConfig(output_dir=str(folder), events=1500, days=1, seed=7))
  return folder


def clickstream(folder) -> list[str]:
  return ['--source', f'events-jsonl={folder}/*.gz', '--source', f'access-log={folder}/access.log']


def dimension(folder) -> list[str]:
  return [
    '--source',
    f'catalog-csv={folder}/catalog.csv',
    '--source',
    f'taxonomy={folder}/taxonomy.txt',
  ]


def rows(output, table: str) -> list[tuple]:
  files = f'{output}/{table}/*.parquet' if table in SNAPSHOTS else f'{output}/{table}/*/*.parquet'
  if not glob.glob(files):
    return []
  return (
    duckdb.connect()
    .execute(f"select * from read_parquet('{files}', hive_partitioning = true) order by all")
    .fetchall()
  )


def run_on_flink(flink: LocalFlinkCluster, *args: str) -> None:
  """`shopstream run` on the cluster, in a process of its own, as a user runs it.

  In the test process, the FlinkRunner's job servers and the LOOPBACK SDK
  workers outlive the run and kept a core busy (seen: later tests slowed down).
  """
  command = [sys.executable, '-m', 'beam_pipelines.cli', 'run']
  command += ['--runner-config', 'runner_configs/flink_local.yaml', *args]
  command += [f'--flink_master={flink.master}']
  done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]


def test_batch_on_flink_gives_the_direct_runners_tables(flink, inputs, tmp_path, monkeypatch):
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  sources = [
    *clickstream(inputs),
    *dimension(inputs),
    '--source',
    f'orders-csv={inputs}/orders.csv',
    '--orders-timezone',
    'Europe/London',
  ]
  assert cli.main(['run', *sources, '--output', str(tmp_path / 'direct'), *COMMON]) == 0
  run_on_flink(flink, *sources, '--output', str(tmp_path / 'flink'), *COMMON)

  for table in (*tables.TABLES, *DERIVED):
    direct = rows(tmp_path / 'direct', table)
    assert rows(tmp_path / 'flink', table) == direct, table
    assert direct or table == 'dead_letter', table
  assert len(rows(tmp_path / 'direct', 'orders')) > 10
  summary = json.loads((tmp_path / 'flink' / '_summary.json').read_text())
  assert summary == json.loads((tmp_path / 'direct' / '_summary.json').read_text())
  assert [job['state'] for job in flink.jobs()].count('FINISHED') >= 2  # the run and derive


def test_a_bounded_stream_on_flink_gives_the_batch_tables(
  flink, inputs, tmp_path, kinesis_endpoint, aws_credentials, monkeypatch
):
  """Four shards read at parallelism 2; --stop-after-idle ends the job."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  batch = tmp_path / 'batch'
  assert (
    cli.main(['run', *clickstream(inputs), *dimension(inputs), '--output', str(batch), *COMMON])
    == 0
  )
  endpoint = ['--kinesis-endpoint-url', kinesis_endpoint, '--region', 'us-east-1']
  stream = f'flink-{tmp_path.name}'
  assert cli.main(['kinesis', 'create-stream', stream, '--shards', '4', *endpoint]) == 0
  assert cli.main(['kinesis', 'put', stream, *clickstream(inputs), *endpoint]) == 0
  kinesis = [
    '--kinesis-stream',
    stream,
    '--kinesis-endpoint-url',
    kinesis_endpoint,
    '--kinesis-region',
    'us-east-1',
    '--stop-after-idle',
    '3',
  ]
  out = tmp_path / 'stream'
  run_on_flink(flink, *kinesis, *dimension(inputs), '--output', str(out), *COMMON)

  for table in ('events', 'sessions', *DERIVED):
    expected = rows(batch, table)
    assert len(expected) > 20, table
    assert rows(out, table) == expected, table
  summary = json.loads((out / '_summary.json').read_text())
  assert summary['sources'][f'kinesis:{stream}']['duplicate'] > 0
  assert summary['tables']['sessions'] == len(rows(batch, 'sessions'))


@pytest.mark.flink_stall
def test_an_unbounded_stream_on_flink_gives_the_batch_rows(
  flink, inputs, tmp_path, kinesis_endpoint, aws_credentials, monkeypatch
):
  """No stop condition: records arrive while the job runs (the morning, a record
  stamped 2100 by a broken client clock, a reshard from 4 shards to 8, then the
  afternoon); the job is cancelled once the watermark has passed every session.
  Each shard lineage is a unit of work with a watermark of its own, so every
  open shard gets a record two days on to close its last sessions."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  (events_file,) = glob.glob(f'{inputs}/events-*.jsonl.gz')
  morning, afternoon = [], []
  for line in gzip.open(events_file).read().splitlines():
    time_us = json_event_time(line)
    (afternoon if time_us and utc_hour(time_us) >= 12 else morning).append(line)
  halves = tmp_path / 'morning.jsonl', tmp_path / 'afternoon.jsonl'
  for path, lines in zip(halves, (morning, afternoon), strict=True):
    path.write_bytes(b'\n'.join(lines) + b'\n')
  skewed = (
    b'{"event_type": "page_view", "event_time": "2100-01-01T00:00:00Z", "anonymous_id": "skew"}'
  )

  # Two days on: moves the watermark past every session of the sample's day.
  def flush(n: int) -> bytes:
    return (
      b'{"event_type": "page_view", "event_time": "2026-03-03T00:00:00Z", '
      b'"anonymous_id": "flush-%d"}' % n
    )

  extra = tmp_path / 'extra.jsonl'
  extra.write_bytes(skewed + b'\n' + b'\n'.join(flush(n) for n in range(8)) + b'\n')
  batch = tmp_path / 'batch'
  sources = [arg for p in (*halves, extra) for arg in ('--source', f'events-jsonl={p}')]
  assert cli.main(['run', *sources, '--output', str(batch), *COMMON]) == 0

  kinesis = boto3.client('kinesis', endpoint_url=kinesis_endpoint, region_name='us-east-1')
  endpoint = ['--kinesis-endpoint-url', kinesis_endpoint, '--region', 'us-east-1']
  stream = f'unbounded-{tmp_path.name}'
  assert cli.main(['kinesis', 'create-stream', stream, '--shards', '4', *endpoint]) == 0
  out = tmp_path / 'stream'
  command = [sys.executable, '-m', 'beam_pipelines.cli', 'run']
  command += [
    '--runner-config',
    'runner_configs/flink_local.yaml',
    f'--flink_master={flink.master}',
  ]
  command += ['--kinesis-stream', stream, '--kinesis-endpoint-url', kinesis_endpoint]
  command += ['--kinesis-region', 'us-east-1', '--output', str(out), *COMMON]
  log = open(tmp_path / 'run.log', 'wb')  # the child writes it
  # A session of its own: killing it ends the job server it starts, too.
  job = subprocess.Popen(
    command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
  )

  def written(table):
    return without_flush(rows(out, table))

  expected = {t: without_flush(rows(batch, t)) for t in ('events', 'sessions')}
  try:
    wait_for(lambda: any(j['state'] == 'RUNNING' for j in flink.jobs()), 'the job to run')
    put = ['kinesis', 'put', stream, *endpoint]
    assert cli.main([*put, '--source', f'events-jsonl={halves[0]}']) == 0
    kinesis.put_record(StreamName=stream, Data=skewed, PartitionKey='skew')
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=8, ScalingType='UNIFORM_SCALING')
    wait_for(
      lambda: (
        kinesis.describe_stream_summary(StreamName=stream)['StreamDescriptionSummary'][
          'StreamStatus'
        ]
        == 'ACTIVE'
      ),
      'the reshard',
    )
    assert cli.main([*put, '--source', f'events-jsonl={halves[1]}']) == 0
    open_shards = [
      shard
      for shard in kinesis.list_shards(StreamName=stream)['Shards']
      if 'EndingSequenceNumber' not in shard['SequenceNumberRange']
    ]
    assert len(open_shards) == 8
    for n, shard in enumerate(open_shards):
      kinesis.put_record(
        StreamName=stream,
        Data=flush(n),
        PartitionKey='flush',
        ExplicitHashKey=shard['HashKeyRange']['StartingHashKey'],
      )
    wait_for(
      lambda: all(len(written(t)) >= len(expected[t]) for t in expected),
      'the stream to write every session',
      timeout_s=300,
    )
  finally:
    for j in flink.jobs():
      if j['state'] == 'RUNNING':
        cancel = f'http://{flink.master}/jobs/{j["jid"]}?mode=cancel'
        urllib.request.urlopen(urllib.request.Request(cancel, method='PATCH'))
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    log.close()
  for table, want in expected.items():
    assert len(want) > 20, table
    assert written(table) == want, table
  letters = (
    duckdb.connect()
    .execute(f"select reason, payload from read_parquet('{out}/dead_letter/*/*.parquet')")
    .fetchall()
  )
  assert ('clock_skew', skewed) in letters
  assert not [r for r in letters if r[0] == 'late']


def without_flush(table_rows: list[tuple]) -> list[tuple]:
  """The rows of every key but the flush-N ones, whose sessions the stream never closes."""
  return [r for r in table_rows if not any(str(v).startswith('flush-') for v in r)]


def utc_hour(time_us: int) -> int:
  return (time_us // 3_600_000_000) % 24


def wait_for(condition, what: str, timeout_s: float = 120) -> None:
  deadline = time.monotonic() + timeout_s
  while not condition():
    if time.monotonic() > deadline:
      raise AssertionError(f'timed out waiting for {what}')
    time.sleep(1)


def test_the_emr_process_harness_gives_the_same_tables(flink, inputs, tmp_path, monkeypatch):
  """The SDK harness as EMR starts it: Beam's boot binary through bootstrap.sh's wrapper."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  home = tmp_path / 'opt-shopstream'
  home.mkdir()
  shutil.copy(local_flink.BOOT, home / 'boot.bin')
  bootstrap = os.path.join(PROJECT, 'deploy', 'emr', 'bootstrap.sh')
  wrap = f'source {bootstrap} && write_boot_wrapper "$0" "$1"'
  subprocess.run(['bash', '-c', wrap, str(home), sys.prefix], check=True)

  sources = clickstream(inputs)
  assert cli.main(['run', *sources, '--output', str(tmp_path / 'direct'), *COMMON]) == 0
  harness = ['--environment_type=PROCESS', f'--environment_config={{"command": "{home}/boot"}}']
  run_on_flink(flink, *sources, *harness, '--output', str(tmp_path / 'flink'), *COMMON)
  for table in ('events', 'sessions', 'dead_letter', *DERIVED):
    direct = rows(tmp_path / 'direct', table)
    assert direct, table
    assert rows(tmp_path / 'flink', table) == direct, table
