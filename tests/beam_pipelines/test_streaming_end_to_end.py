"""Batch and streaming give the same rows: exports -> batch tables, and the same
exports -> `shopstream kinesis put` -> kinesis-local (or `shopstream kafka put` ->
a Kafka broker) -> the streaming pipeline.

Compared with DuckDB over the written Parquet: every column of events (but
`source`, the lineage, which names the file or the stream) and of sessions.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json

import duckdb
import orjson
import pytest

from beam_pipelines import cli
from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from beam_pipelines.io.kafka_offsets import committed_offsets
from beam_pipelines.io.kafka_topics import end_offsets
from beam_pipelines.pipelines.streaming_pipeline import json_event_time

COMMON = ['--reference-time', '2026-06-01T00:00:00Z', '--progress', 'never']


SNAPSHOTS = ('interactions', 'item_pairs', 'customers')  # derived, unpartitioned


def rows(output, table: str) -> list[tuple]:
  if table in SNAPSHOTS:
    query = f"select * from read_parquet('{output}/{table}/*.parquet')"
  else:
    query = (
      f"select * exclude (dt) from read_parquet('{output}/{table}/*/*.parquet', "
      'hive_partitioning = true)'
    )
  return duckdb.connect().execute(f'{query} order by all').fetchall()


def batch_tables(tmp_path) -> tuple[list[str], list[str]]:
  """Generates exports, writes their batch tables to tmp_path/batch; returns the clickstream
  and product-dimension --source arguments."""
  inputs = tmp_path / 'in'
  generate(GeneratorConfig(output_dir=str(inputs), events=1500, days=1, seed=21))
  sources = [
    '--source',
    f'events-jsonl={inputs}/*.gz',
    '--source',
    f'access-log={inputs}/access.log',
  ]
  products = [
    '--source',
    f'catalog-csv={inputs}/catalog.csv',
    '--source',
    f'taxonomy={inputs}/taxonomy.txt',
  ]
  assert cli.main(['run', *sources, *products, '--output', str(tmp_path / 'batch'), *COMMON]) == 0
  return sources, products


def assert_stream_wrote_the_batch_tables(tmp_path, stream_source: str) -> None:
  # The derived tables too: both runs derive them from what they wrote.
  for table in ('events', 'sessions', 'session_sequences', *SNAPSHOTS):
    batch, stream = rows(tmp_path / 'batch', table), rows(tmp_path / 'stream', table)
    assert len(batch) > 20, table
    assert stream == batch, table
  with_products = (
    duckdb.connect()
    .execute(
      f'select count(brand), count(category_path) from read_parquet('
      f"'{tmp_path}/stream/events/*/*.parquet')"
    )
    .fetchone()
  )
  assert min(with_products) > 100  # the product dimension joined in the stream too
  summary = json.loads((tmp_path / 'stream' / '_summary.json').read_text())
  read = summary['sources'][stream_source]
  assert read['dead_letter'] == 0 and read['duplicate'] > 0
  assert summary['tables']['sessions'] == len(rows(tmp_path / 'batch', 'sessions'))


@pytest.mark.parametrize(
  'runner_config',
  [
    'runner_configs/direct_streaming.yaml',
    # The portable runner protocol, as Flink gets the pipeline (LOOPBACK harness).
    'runner_configs/portable_local.yaml',
  ],
)
def test_streaming_over_kinesis_gives_the_batch_tables(
  tmp_path, kinesis_endpoint, aws_credentials, monkeypatch, runner_config
):
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'parity-salt')
  sources, products = batch_tables(tmp_path)
  endpoint = ['--kinesis-endpoint-url', kinesis_endpoint, '--region', 'us-east-1']
  stream_name = f'parity-{tmp_path.name}'  # the emulator is shared by the tests
  assert cli.main(['kinesis', 'create-stream', stream_name, '--shards', '2', *endpoint]) == 0
  assert cli.main(['kinesis', 'put', stream_name, *sources, *endpoint]) == 0
  assert (
    cli.main(
      [
        'run',
        '--runner-config',
        runner_config,
        '--kinesis-stream',
        stream_name,
        '--kinesis-endpoint-url',
        kinesis_endpoint,
        '--kinesis-region',
        'us-east-1',
        '--stop-after-idle',
        '2',
        *products,
        '--output',
        str(tmp_path / 'stream'),
        *COMMON,
      ]
    )
    == 0
  )
  assert_stream_wrote_the_batch_tables(tmp_path, f'kinesis:{stream_name}')


@pytest.mark.parametrize(
  'runner_config', ['runner_configs/direct_streaming.yaml', 'runner_configs/portable_local.yaml']
)
def test_streaming_over_kafka_gives_the_batch_tables(
  tmp_path, kafka_bootstrap, monkeypatch, runner_config
):
  """Three partitions: a session key's events share one, and keys interleave across them."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'parity-salt')
  sources, products = batch_tables(tmp_path)
  bootstrap = ['--kafka-bootstrap', kafka_bootstrap]
  topic = f'parity-{tmp_path.name}'
  assert cli.main(['kafka', 'create-topic', topic, '--partitions', '3', *bootstrap]) == 0
  assert cli.main(['kafka', 'put', topic, *sources, *bootstrap]) == 0
  run = ['run', '--runner-config', runner_config, '--kafka-topic', topic]
  stream = ['--stop-after-idle', '2', *products, '--output', str(tmp_path / 'stream'), *COMMON]
  assert cli.main(run + bootstrap + stream) == 0
  assert_stream_wrote_the_batch_tables(tmp_path, f'kafka:{topic}')
  # The run ended with its tables written: every record's offset is committed.
  assert committed_offsets(kafka_bootstrap, topic, f'shopstream-{topic}') == end_offsets(
    kafka_bootstrap, topic
  )


def events_sources(folder) -> list[str]:
  return ['--source', f'events-jsonl={folder}/*.gz']


def days_later(source, target, days: int) -> None:
  """The timed events of ``source`` again in ``target``: ``days`` later, other ids."""
  target.mkdir()
  for path in source.glob('*.jsonl.gz'):
    lines = []
    for line in gzip.open(path).read().splitlines():
      time_us = json_event_time(line)
      if time_us is None:
        continue  # unreadable: a dead letter of the first copy already
      event = orjson.loads(line)
      moved = dt.datetime.fromtimestamp(time_us / 1e6, dt.UTC) + dt.timedelta(days=days)
      event['event_time'] = moved.isoformat()
      if isinstance(event.get('event_id'), str):
        event['event_id'] = f'later-{event["event_id"]}'
      lines.append(orjson.dumps(event))
    (target / path.name).write_bytes(gzip.compress(b'\n'.join(lines) + b'\n'))


def test_a_restart_from_committed_offsets_resumes_without_loss_or_repeat(
  tmp_path, kafka_bootstrap, monkeypatch, capsys
):
  """Two runs into one output, the second started from the offsets the first committed
  (the default start), with a day of new records put in between: together they hold
  batch's rows over both days, each once, and the second read only the new records."""
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'parity-salt')
  first, second = tmp_path / 'first', tmp_path / 'second'
  generate(GeneratorConfig(output_dir=str(first), events=800, days=1, seed=31))
  days_later(first, second, days=4)
  both = [*events_sources(first), *events_sources(second)]
  assert cli.main(['run', *both, '--output', str(tmp_path / 'batch'), *COMMON]) == 0
  bootstrap = ['--kafka-bootstrap', kafka_bootstrap]
  topic = f'restart-{tmp_path.name}'
  assert cli.main(['kafka', 'create-topic', topic, '--partitions', '3', *bootstrap]) == 0
  run = ['run', '--runner-config', 'runner_configs/direct_streaming.yaml', '--kafka-topic', topic]
  run += [*bootstrap, '--stop-after-idle', '2', '--output', str(tmp_path / 'stream'), *COMMON]

  assert cli.main(['kafka', 'put', topic, *events_sources(first), *bootstrap]) == 0
  put_first = sum(end_offsets(kafka_bootstrap, topic).values())
  assert cli.main(run) == 0
  assert cli.main(['kafka', 'put', topic, *events_sources(second), *bootstrap]) == 0
  assert cli.main(run) == 0

  for table in ('events', 'sessions'):
    batch, stream = rows(tmp_path / 'batch', table), rows(tmp_path / 'stream', table)
    assert len(batch) > 100, table
    assert stream == batch, table  # every row, each once
  summary = json.loads((tmp_path / 'stream' / '_summary.json').read_text())
  read = summary['sources'][f'kafka:{topic}']['read']
  assert read == sum(end_offsets(kafka_bootstrap, topic).values()) - put_first
  capsys.readouterr()
  assert cli.main(['kafka', 'offsets', topic, *bootstrap]) == 0
  shown = capsys.readouterr().out.splitlines()
  assert shown[0] == f'topic {topic}, group shopstream-{topic}:'
  assert len(shown) == 4 and all(line.endswith('behind 0') for line in shown[1:]), shown


def test_a_run_whose_tables_fail_to_be_written_commits_no_offset(
  tmp_path, kafka_bootstrap, monkeypatch, capsys
):
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'parity-salt')
  generate(GeneratorConfig(output_dir=str(tmp_path / 'in'), events=300, days=1, seed=33))
  bootstrap = ['--kafka-bootstrap', kafka_bootstrap]
  topic = f'unwritable-{tmp_path.name}'
  assert cli.main(['kafka', 'create-topic', topic, *bootstrap]) == 0
  assert cli.main(['kafka', 'put', topic, *events_sources(tmp_path / 'in'), *bootstrap]) == 0
  assert cli.main(['kafka', 'offsets', topic, *bootstrap]) == 0
  assert 'partition 0: committed -, end' in capsys.readouterr().out  # nothing read yet
  (tmp_path / 'file').write_text('a file, not a folder')
  run = ['run', '--runner-config', 'runner_configs/direct_streaming.yaml', '--kafka-topic', topic]
  run += [*bootstrap, '--stop-after-idle', '2', '--output', str(tmp_path / 'file' / 'out')]
  assert cli.main([*run, *COMMON]) != 0
  assert committed_offsets(kafka_bootstrap, topic, f'shopstream-{topic}') == {}
