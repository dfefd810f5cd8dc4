"""shopstream on a real Flink 1.19: a standalone JobManager and TaskManager.

`make install` puts Flink, Beam's Flink job server and the boot binary into
.tools/ (beam_pipelines/dev/local_flink.py). Each test runs `shopstream run` with
runner_configs/flink_local.yaml against the cluster and compares every table
with the DirectRunner's over the same input, in DuckDB; the SDK harness runs
as EMR runs it (PROCESS, through deploy/emr/bootstrap.sh's boot wrapper) in
the batch harness test and in the TaskManager-kill test, which has a cluster
of its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import gzip
import io
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

from beam_pipelines import cli
from beam_pipelines.dev import local_flink
from beam_pipelines.dev.local_flink import LocalFlinkCluster
from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from beam_pipelines.io import tables
from beam_pipelines.io.kafka_offsets import committed_offsets
from beam_pipelines.io.kafka_topics import end_offsets
from beam_pipelines.pipelines.streaming_pipeline import json_event_time

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON = ['--reference-time', '2026-06-01T00:00:00Z', '--progress', 'never']
pytestmark = pytest.mark.flink

DERIVED = ('interactions', 'item_pairs', 'customers', 'session_sequences')
SNAPSHOTS = ('interactions', 'item_pairs', 'customers', 'retention_cohorts')  # unpartitioned


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
  return parquet_rows(files)


def parquet_rows(files: str, columns: str = '*') -> list[tuple]:
  """The rows of the files matching a glob, in DuckDB, sorted; none if no file matches."""
  if not glob.glob(files):
    return []
  return (
    duckdb.connect()
    .execute(
      f"select {columns} from read_parquet('{files}', hive_partitioning = true) order by all"
    )
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

  for table in (*tables.TABLES, *DERIVED, 'retention_cohorts'):  # the orders give cohorts
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


SKEWED = (
  b'{"event_type": "page_view", "event_time": "2100-01-01T00:00:00Z", "anonymous_id": "skew"}'
)


def flush(n: int, day: str = '2026-03-03') -> bytes:
  """A record days on: moves a shard's watermark past every session of the sample."""
  return (
    b'{"event_type": "page_view", "event_time": "%sT00:00:00Z", '
    b'"anonymous_id": "flush-%d"}' % (day.encode(), n)
  )


@pytest.fixture(scope='module')
def day_halves(inputs, tmp_path_factory):
  """The sample's events as a morning and an afternoon file, and batch's tables over
  them plus the clock-skewed record and the flush records."""
  folder = tmp_path_factory.mktemp('halves')
  (events_file,) = glob.glob(f'{inputs}/events-*.jsonl.gz')
  morning, afternoon = [], []
  for line in gzip.open(events_file).read().splitlines():
    time_us = json_event_time(line)
    (afternoon if time_us and utc_hour(time_us) >= 12 else morning).append(line)
  halves = folder / 'morning.jsonl', folder / 'afternoon.jsonl'
  for path, lines in zip(halves, (morning, afternoon), strict=True):
    path.write_bytes(b'\n'.join(lines) + b'\n')
  extra = folder / 'extra.jsonl'
  extra.write_bytes(SKEWED + b'\n' + b'\n'.join(flush(n) for n in range(8)) + b'\n')
  sources = [arg for p in (*halves, extra) for arg in ('--source', f'events-jsonl={p}')]
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
    assert cli.main(['run', *sources, '--output', str(folder / 'batch'), *COMMON]) == 0
  return halves, folder / 'batch'


def create_stream(endpoint_url: str, stream: str, shards: int = 4):
  """A stream of kinesis-local made with the CLI; its boto3 client and the endpoint flags."""
  endpoint = ['--kinesis-endpoint-url', endpoint_url, '--region', 'us-east-1']
  assert cli.main(['kinesis', 'create-stream', stream, '--shards', str(shards), *endpoint]) == 0
  return boto3.client('kinesis', endpoint_url=endpoint_url, region_name='us-east-1'), endpoint


def start_stream_job(flink, stream, endpoint_url, out, log_path, *extra) -> subprocess.Popen:
  """`shopstream run --kinesis-stream` with no stop condition, in a session of its own."""
  kinesis = ['--kinesis-stream', stream, '--kinesis-endpoint-url', endpoint_url]
  return start_job(flink, [*kinesis, '--kinesis-region', 'us-east-1'], out, log_path, *extra)


def start_job(flink, source: list[str], out, log_path, *extra) -> subprocess.Popen:
  """`shopstream run` of a stream with no stop condition, in a session of its own."""
  command = [sys.executable, '-m', 'beam_pipelines.cli', 'run']
  command += ['--runner-config', 'runner_configs/flink_local.yaml']
  command += [f'--flink_master={flink.master}', *extra]
  command += [*source, '--output', str(out), *COMMON]
  log = open(log_path, 'wb')  # the child writes it
  job = subprocess.Popen(
    command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
  )
  log.close()
  wait_for(lambda: running_job(flink) is not None, 'the job to run')
  return job


def stop_stream_job(flink, job: subprocess.Popen) -> None:
  """Cancels the Flink job and kills the launcher with the job server it started."""
  for j in flink.jobs():
    if j['state'] not in ('FINISHED', 'CANCELED', 'FAILED'):
      cancel = f'http://{flink.master}/jobs/{j["jid"]}?mode=cancel'
      urllib.request.urlopen(urllib.request.Request(cancel, method='PATCH'))
  os.killpg(job.pid, signal.SIGKILL)
  job.wait()


def running_job(flink) -> str | None:
  return next((j['jid'] for j in flink.jobs() if j['state'] == 'RUNNING'), None)


def put_flush_records(kinesis, stream: str, day: str = '2026-03-03') -> int:
  """One flush record on every open shard (each shard lineage has a watermark of its
  own); returns how many shards are open."""
  open_shards = [
    shard
    for shard in kinesis.list_shards(StreamName=stream)['Shards']
    if 'EndingSequenceNumber' not in shard['SequenceNumberRange']
  ]
  for n, shard in enumerate(open_shards):
    kinesis.put_record(
      StreamName=stream,
      Data=flush(n, day),
      PartitionKey='flush',
      ExplicitHashKey=shard['HashKeyRange']['StartingHashKey'],
    )
  return len(open_shards)


def assert_stream_gave_the_batch_rows(out, expected: dict[str, list[tuple]]) -> None:
  """Batch's events and sessions, the skewed record as a clock_skew letter, none late."""
  for table, want in expected.items():
    assert len(want) > 20, table
    assert without_flush(rows(out, table)) == want, table
  letters = dead_letters(out)
  assert ('clock_skew', SKEWED) in letters
  assert not [r for r in letters if r[0] == 'late']


def dead_letters(output) -> list[tuple]:
  return parquet_rows(f'{output}/dead_letter/*/*.parquet', 'reason, payload')


def test_an_unbounded_stream_on_flink_gives_the_batch_rows(
  flink, day_halves, tmp_path, kinesis_endpoint, aws_credentials, monkeypatch
):
  """No stop condition: records arrive while the job runs (the morning, a record
  stamped 2100 by a broken client clock, a reshard from 4 shards to 8, then the
  afternoon); the job is cancelled once the watermark has passed every session."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  halves, batch = day_halves
  stream = f'unbounded-{tmp_path.name}'
  kinesis, endpoint = create_stream(kinesis_endpoint, stream)
  out = tmp_path / 'stream'
  expected = {t: without_flush(rows(batch, t)) for t in ('events', 'sessions')}

  job = start_stream_job(flink, stream, kinesis_endpoint, out, tmp_path / 'run.log')
  try:
    put = ['kinesis', 'put', stream, *endpoint]
    assert cli.main([*put, '--source', f'events-jsonl={halves[0]}']) == 0
    kinesis.put_record(StreamName=stream, Data=SKEWED, PartitionKey='skew')
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=8, ScalingType='UNIFORM_SCALING')
    wait_for(lambda: stream_status(kinesis, stream) == 'ACTIVE', 'the reshard')
    assert cli.main([*put, '--source', f'events-jsonl={halves[1]}']) == 0
    assert put_flush_records(kinesis, stream) == 8
    wait_for_tables(out, expected)
  finally:
    stop_stream_job(flink, job)
  assert_stream_gave_the_batch_rows(out, expected)


def test_an_unbounded_kafka_topic_on_flink_gives_the_batch_rows(
  flink, day_halves, tmp_path, kafka_bootstrap, monkeypatch
):
  """The Kafka twin of the test above: no stop condition, three partitions, the
  morning, a record stamped 2100, a fourth partition added while the job runs,
  then the afternoon; cancelled once the watermark has passed every session.
  While it runs, the group's offsets are committed up to the last record whose
  rows are written (kafka_offsets.py): all but the flush records, days later."""
  from confluent_kafka import Producer
  from confluent_kafka.admin import AdminClient, NewPartitions

  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  halves, batch = day_halves
  topic = f'unbounded-{tmp_path.name}'
  at = ['--kafka-bootstrap', kafka_bootstrap]
  assert cli.main(['kafka', 'create-topic', topic, '--partitions', '3', *at]) == 0
  out = tmp_path / 'stream'
  expected = {t: without_flush(rows(batch, t)) for t in ('events', 'sessions')}
  producer = Producer({'bootstrap.servers': kafka_bootstrap})
  admin = AdminClient({'bootstrap.servers': kafka_bootstrap})

  job = start_job(flink, ['--kafka-topic', topic, *at], out, tmp_path / 'run.log')
  try:
    assert cli.main(['kafka', 'put', topic, *at, '--source', f'events-jsonl={halves[0]}']) == 0
    producer.produce(topic, value=SKEWED, key=b'skew')
    assert producer.flush(30) == 0
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(30)
    wait_for(lambda: len(admin.list_topics(topic).topics[topic].partitions) == 4, '4 partitions')
    assert cli.main(['kafka', 'put', topic, *at, '--source', f'events-jsonl={halves[1]}']) == 0
    before_flush = end_offsets(kafka_bootstrap, topic)
    # Every record read (all but the skewed one become events), then longer than a
    # call of the reader (5 s): the last offsets mark without the flush records.
    jid = running_job(flink)
    wait_for(lambda: events_read(flink, jid) >= sum(before_flush.values()) - 1, 'the read')
    time.sleep(8)
    producer = Producer({'bootstrap.servers': kafka_bootstrap})  # one that knows partition 3
    for partition in range(4):  # each partition's watermark past every session and mark
      producer.produce(topic, value=flush(partition, day='2026-03-05'), partition=partition)
    assert producer.flush(30) == 0
    wait_for_tables(out, expected)
    group = f'shopstream-{topic}'
    deadline = time.monotonic() + 120
    while committed_offsets(kafka_bootstrap, topic, group) != before_flush:
      if time.monotonic() > deadline:
        break
      time.sleep(1)
    assert committed_offsets(kafka_bootstrap, topic, group) == before_flush
  finally:
    stop_stream_job(flink, job)
  assert_stream_gave_the_batch_rows(out, expected)


def test_a_killed_taskmanager_restores_its_checkpoint_without_loss_or_repeat(
  day_halves, tmp_path, kinesis_endpoint, aws_credentials, monkeypatch
):
  """SIGKILL of the TaskManager (and its PROCESS SDK harnesses, as on EMR) after a
  checkpoint and with records read since: Flink restores on a new TaskManager,
  Kinesis is read again from the checkpoint, and the windowed files written
  again are the same files. The tables equal batch's: no row twice, none lost."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  halves, batch = day_halves
  stream = f'killed-{tmp_path.name}'
  kinesis, endpoint = create_stream(kinesis_endpoint, stream)
  out = tmp_path / 'stream'
  expected = {t: without_flush(rows(batch, t)) for t in ('events', 'sessions')}
  put = ['kinesis', 'put', stream, *endpoint]

  with LocalFlinkCluster(task_slots=4, work_dir=str(tmp_path / 'flink')) as flink:
    harness = emr_process_harness(tmp_path)
    job = start_stream_job(
      flink,
      stream,
      kinesis_endpoint,
      out,
      tmp_path / 'run.log',
      *harness,
      '--checkpointing_interval=3000',
    )
    try:
      jid = running_job(flink)
      assert cli.main([*put, '--source', f'events-jsonl={halves[0]}']) == 0
      wait_for(lambda: events_read(flink, jid) >= 500, 'the reader to pass the morning on')
      taken_before = wait_for_a_new_checkpoint(flink, jid, 'a checkpoint of the morning')
      read_at_checkpoint = events_read(flink, jid)
      assert cli.main([*put, '--source', f'events-jsonl={halves[1]}']) == 0
      kinesis.put_record(StreamName=stream, Data=SKEWED, PartitionKey='skew')
      # Killed with records read since the checkpoint: they are read again.
      wait_for(lambda: events_read(flink, jid) > read_at_checkpoint, 'the afternoon to be read')
      flink.kill_taskmanager()
      flink.start_taskmanager()
      wait_for(lambda: checkpoints(flink, jid).get('latest', {}).get('restored'), 'a restore')
      put_flush_records(kinesis, stream)
      wait_for_tables(out, expected)
    finally:
      stop_stream_job(flink, job)
    restored = checkpoints(flink, jid)['latest']['restored']
    assert restored['id'] > taken_before  # the checkpoint of the morning, or a later one

  for table, want in expected.items():
    assert len(want) > 20, table
    assert without_flush(rows(out, table)) == want, table
  letters = dead_letters(out)
  assert letters.count(('clock_skew', SKEWED)) == 1


def test_three_days_through_one_job_keep_state_bounded_and_nothing_late(
  flink, tmp_path, kinesis_endpoint, aws_credentials, monkeypatch
):
  """Soak: three days of events, put hour by hour (a compressed clock) into one
  running job. Nothing is late or out of range, the watermark follows the days
  and each day's tables are whole a day later while the job runs, the tables
  equal batch's, and the dedup and session state stay bounded."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  generate(GeneratorConfig(output_dir=str(tmp_path / 'in'), events=3000, days=3, seed=11))
  lines = [
    line
    for path in sorted(glob.glob(f'{tmp_path}/in/events-*.jsonl.gz'))
    for line in gzip.open(path).read().splitlines()
  ]
  by_hour: dict[int, list[bytes]] = {}
  for line in lines:
    hour = (json_event_time(line) or 0) // 3_600_000_000  # no time: with the first hour
    by_hour.setdefault(hour, []).append(line)
  hours = sorted(by_hour)
  first_hour = hours[1] if hours[0] == 0 else hours[0]
  batch_sources = ['--source', f'events-jsonl={tmp_path}/in/events-*.jsonl.gz']
  flush_file = tmp_path / 'flush.jsonl'
  flush_file.write_bytes(b'\n'.join(flush(n, day='2026-03-06') for n in range(4)) + b'\n')
  batch_sources += ['--source', f'events-jsonl={flush_file}']
  assert cli.main(['run', *batch_sources, '--output', str(tmp_path / 'batch'), *COMMON]) == 0
  expected = {t: without_flush(rows(tmp_path / 'batch', t)) for t in ('events', 'sessions')}

  stream = f'soak-{tmp_path.name}'
  kinesis, endpoint = create_stream(kinesis_endpoint, stream)
  out = tmp_path / 'stream'
  job = start_stream_job(
    flink, stream, kinesis_endpoint, out, tmp_path / 'run.log', '--checkpointing_interval=2000'
  )
  days = []
  try:
    jid = running_job(flink)
    hour_file = tmp_path / 'hour.jsonl'
    for hour in hours:
      hour_file.write_bytes(b'\n'.join(by_hour[hour]) + b'\n')
      with contextlib.redirect_stdout(io.StringIO()):
        assert (
          cli.main(['kinesis', 'put', stream, *endpoint, '--source', f'events-jsonl={hour_file}'])
          == 0
        )
      if hour >= first_hour and (hour - first_hour) % 24 == 23:
        days.append(day_figures(flink, jid, hour, out, tmp_path / 'batch'))
    put_flush_records(kinesis, stream, day='2026-03-06')
    wait_for_tables(out, expected)
  finally:
    stop_stream_job(flink, job)
  (tmp_path / 'soak.json').write_text(json.dumps(days, indent=2))
  print(json.dumps(days, indent=2))  # the figures per simulated day, for `pytest -s`

  for table, want in expected.items():
    assert len(want) > 100, table
    assert without_flush(rows(out, table)) == want, table
  reasons = {reason for reason, _ in dead_letters(out)}
  assert not reasons & {'late', 'event_time_out_of_range', 'clock_skew'}, reasons
  assert len(days) == 3
  # Dedup state expires a day of event time after each id: flat from the first
  # day on. A key's session boundary stays a week, so sessionize grows slowly
  # here; the reader's state is Beam 2.62's SDF residual leak (apache/beam
  # 27648), which grows with polls, not with data: reported, not asserted.
  dedup = [d['state_bytes']['dedup'] for d in days]
  assert max(dedup) < 1.5 * min(dedup), dedup
  sessionize = [d['state_bytes']['sessionize'] for d in days]
  assert sessionize[2] < 1.5 * sessionize[1], sessionize


def day_figures(flink, jid: str, hour: int, out, batch) -> dict:
  """After a simulated day is put: the watermark passes its noon (a shard's watermark
  stops at its own newest record less a minute, and the nights are sparse), the day
  before is in the tables whole, and the size of the next completed checkpoint."""
  day_end_us = (hour + 1) * 3_600_000_000
  wait_for(
    lambda: sessionize_watermark_us(flink, jid) >= day_end_us - 12 * 3_600_000_000,
    'the watermark to pass the noon of the day',
  )
  day_before = dt.datetime.fromtimestamp(day_end_us / 1e6 - 2 * 86400, dt.UTC).date()
  want = without_flush(rows_of_day(batch, 'events', day_before))
  wait_for(lambda: rows_of_day(out, 'events', day_before) == want, f'the events of {day_before}')
  wait_for_a_new_checkpoint(flink, jid, 'a checkpoint of the day')
  completed = checkpoints(flink, jid)['latest']['completed']
  return {
    'through_utc': dt.datetime.fromtimestamp(day_end_us / 1e6, dt.UTC).isoformat(),
    'watermark_utc': dt.datetime.fromtimestamp(
      sessionize_watermark_us(flink, jid) / 1e6, dt.UTC
    ).isoformat(),
    'events_of_the_day_before': len(want),
    'checkpoint_bytes': completed['state_size'],
    'state_bytes': state_by_step(flink, jid, completed['id']),
  }


STATEFUL_STEPS = {'read': 'ReadKinesis,', 'dedup': 'RouteCopies', 'sessionize': 'Sessionize'}


def state_by_step(flink, jid: str, checkpoint_id: int) -> dict[str, int]:
  """A checkpoint's state size per stateful step (Flink vertex), in bytes."""
  names = {v['id']: v['name'] for v in vertices(flink, jid)}
  tasks = (flink.rest(f'jobs/{jid}/checkpoints/details/{checkpoint_id}') or {}).get('tasks', {})
  return {
    step: sum(t['state_size'] for vid, t in tasks.items() if marker in names.get(vid, ''))
    for step, marker in STATEFUL_STEPS.items()
  }


def rows_of_day(output, table: str, day: dt.date) -> list[tuple]:
  return parquet_rows(f'{output}/{table}/dt={day.isoformat()}/*.parquet')


def sessionize_watermark_us(flink, jid: str) -> int:
  """The lowest input watermark over the sessionizing subtasks (none yet: minus infinity)."""
  (vertex,) = [v for v in vertices(flink, jid) if 'Sessionize' in v['name']]
  marks = flink.rest(f'jobs/{jid}/vertices/{vertex["id"]}/watermarks') or []
  values = [int(m['value']) for m in marks if m['id'].endswith('currentInputWatermark')]
  return min(values) * 1000 if values else -(2**63)


def checkpoints(flink, jid: str) -> dict:
  return flink.rest(f'jobs/{jid}/checkpoints') or {}


def wait_for_a_new_checkpoint(flink, jid: str, what: str) -> int:
  """Waits until a checkpoint begun after this call has completed; returns the number
  begun before it. Ids grow, so any checkpoint with a higher id is a new one."""
  counts = checkpoints(flink, jid).get('counts', {})
  begun = counts.get('completed', 0) + counts.get('in_progress', 0)
  wait_for(lambda: checkpoints(flink, jid).get('counts', {}).get('completed', 0) > begun, what)
  return begun


def events_read(flink, jid: str) -> int:
  """Records into the streaming dedup: what the Kinesis reader has passed on so far."""
  return sum(
    v['metrics'].get('read-records', 0) for v in vertices(flink, jid) if 'RouteCopies' in v['name']
  )


def vertices(flink, jid: str) -> list[dict]:
  """The job's Flink vertices (fused steps), with their names and metrics."""
  return (flink.rest(f'jobs/{jid}') or {}).get('vertices', [])


def stream_status(kinesis, stream: str) -> str:
  return kinesis.describe_stream_summary(StreamName=stream)['StreamDescriptionSummary'][
    'StreamStatus'
  ]


def wait_for_tables(out, expected: dict[str, list[tuple]]) -> None:
  wait_for(
    lambda: all(len(without_flush(rows(out, t))) >= len(want) for t, want in expected.items()),
    'the stream to write every session',
    timeout_s=300,
  )


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


def emr_process_harness(tmp_path) -> list[str]:
  """The SDK harness as EMR starts it: Beam's boot binary through bootstrap.sh's wrapper,
  with the salt of this test in the environment file bootstrap.sh writes (the
  TaskManager, started before the test set its salt, does not have it)."""
  home = tmp_path / 'opt-shopstream'
  home.mkdir()
  shutil.copy(local_flink.BOOT, home / 'boot.bin')
  bootstrap = os.path.join(PROJECT, 'deploy', 'emr', 'bootstrap.sh')
  script = (
    f'source {bootstrap} && write_boot_wrapper "$0" "$1" && '
    'printenv SHOPSTREAM_PII_SALT | PYTHON="$2" salt_environment >"$0/environment"'
  )
  subprocess.run(['bash', '-c', script, str(home), sys.prefix, sys.executable], check=True)
  return ['--environment_type=PROCESS', f'--environment_config={{"command": "{home}/boot"}}']


def test_the_emr_process_harness_gives_the_same_tables(flink, inputs, tmp_path, monkeypatch):
  """Batch with the SDK harness that bootstrap.sh's boot wrapper starts, as on EMR."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'flink-salt')
  sources = clickstream(inputs)
  assert cli.main(['run', *sources, '--output', str(tmp_path / 'direct'), *COMMON]) == 0
  harness = emr_process_harness(tmp_path)
  run_on_flink(flink, *sources, *harness, '--output', str(tmp_path / 'flink'), *COMMON)
  for table in ('events', 'sessions', 'dead_letter', *DERIVED):
    direct = rows(tmp_path / 'direct', table)
    assert direct, table
    assert rows(tmp_path / 'flink', table) == direct, table
