"""Tables written to s3://, round-tripped through a real S3 emulator (moto's server)."""

from __future__ import annotations

import json

import boto3
import pyarrow.dataset as ds
import pyarrow.fs
import pytest

from beam_pipelines import cli
from beam_pipelines.dev.sample_data import GeneratorConfig, generate

BUCKET = 'shopstream-test'
REGION = 'us-east-1'


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint):
  # Credentials only through the standard AWS chain: the environment here.
  monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'testing')
  monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'testing')
  monkeypatch.setenv('AWS_DEFAULT_REGION', REGION)
  s3 = boto3.client('s3', endpoint_url=s3_endpoint, region_name=REGION)
  if BUCKET not in [b['Name'] for b in s3.list_buckets()['Buckets']]:
    s3.create_bucket(Bucket=BUCKET)
  return s3


def read_table(s3_endpoint: str, path: str):
  host = s3_endpoint.removeprefix('http://')
  fs = pyarrow.fs.S3FileSystem(
    endpoint_override=host, scheme='http', access_key='testing', secret_key='testing', region=REGION
  )
  return ds.dataset(path, filesystem=fs, format='parquet', partitioning='hive').to_table()


def sorted_rows(table, key):
  return sorted(table.drop_columns(['dt']).to_pylist(), key=lambda row: row[key])


def test_s3_output_equals_local_output(tmp_path, aws_env, s3_endpoint):
  generate(GeneratorConfig(output_dir=str(tmp_path / 'in'), events=1500, days=2, seed=3))
  common = [
    'run',
    '--source',
    f'events-jsonl={tmp_path}/in/*.gz',
    '--source',
    f'orders-csv={tmp_path}/in/orders.csv',
    '--reference-time',
    '2026-06-01T00:00:00Z',
    '--progress',
    'never',
  ]
  to_s3 = [
    '--output',
    f's3://{BUCKET}/run',
    '--s3_endpoint_url',
    s3_endpoint,
    '--s3_region_name',
    REGION,
  ]
  assert cli.main(common + ['--output', str(tmp_path / 'local')]) == 0
  assert cli.main(common + to_s3) == 0

  local_summary = json.loads((tmp_path / 'local' / '_summary.json').read_text())
  s3_summary = json.loads(aws_env.get_object(Bucket=BUCKET, Key='run/_summary.json')['Body'].read())
  assert s3_summary['tables'] == local_summary['tables']
  keys = [o['Key'] for o in aws_env.list_objects_v2(Bucket=BUCKET, Prefix='run/')['Contents']]
  assert not [k for k in keys if '_staging' in k]
  assert any(k.startswith('run/events/dt=2026-03-01/part-') for k in keys)
  for table, key in (('events', 'event_id'), ('orders', 'order_id')):
    remote = read_table(s3_endpoint, f'{BUCKET}/run/{table}')
    local = ds.dataset(
      str(tmp_path / 'local' / table), format='parquet', partitioning='hive'
    ).to_table()
    assert remote.num_rows == local_summary['tables'][table] > 0
    assert sorted_rows(remote, key) == sorted_rows(local, key)

  # A rerun replaces each partition whole on S3 too (copy in, then delete the old files).
  assert cli.main(common + to_s3) == 0
  day_files = [
    o['Key']
    for o in aws_env.list_objects_v2(Bucket=BUCKET, Prefix='run/events/dt=2026-03-01/')['Contents']
  ]
  assert len(day_files) == 1 and day_files[0] not in keys
  assert (
    read_table(s3_endpoint, f'{BUCKET}/run/events').num_rows == local_summary['tables']['events']
  )
