"""`shopstream deploy emr`: the dry run, and a real run against moto's S3 and EMR."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import boto3
import pytest

from beam_pipelines import cli
from beam_pipelines.cli import deploy_emr
from beam_pipelines.dev.local_services import PROJECT_ROOT

BASE = ['deploy', 'emr', '--bucket', 'shop-data', '--region', 'us-east-1']
SALT_SECRET = ['--pii-salt-secret', 'shopstream/pii-salt']
STREAM = ['--stream', 'clicks', '--dimension', 'catalog-csv=s3://shop-data/dim/catalog.csv']
BACKFILL = [
  '--backfill-from',
  '2026-01-01',
  '--backfill-to',
  '2026-01-31',
  '--backfill-source',
  'events-jsonl=s3://shop-data/archive/*.jsonl.gz',
]


def test_dry_run_prints_every_command_and_touches_nothing(capsys, monkeypatch):
  monkeypatch.setattr(deploy_emr.subprocess, 'run', lambda *a, **k: pytest.fail('ran something'))
  assert cli.main([*BASE, *SALT_SECRET, '--create-cluster', *STREAM, *BACKFILL, '--dry-run']) == 0
  out = capsys.readouterr().out
  commands = [line for line in out.splitlines() if not line.startswith('#')]
  assert commands[0] == 'pip wheel --no-deps -w dist .'
  assert 'aws s3 cp deploy/emr/bootstrap.sh s3://shop-data/shopstream/bootstrap.sh' in out
  assert 'runner_configs/flink_emr_streaming.yaml s3://shop-data/shopstream/runner_configs/' in out
  create = next(c for c in commands if c.startswith('aws emr create-cluster'))
  request = json.loads(shlex.split(create.split('  #')[0])[4])
  assert request['ReleaseLabel'] == 'emr-7.4.0'
  assert {a['Name'] for a in request['Applications']} == {'Flink', 'Hadoop'}
  (bootstrap,) = request['BootstrapActions']
  assert bootstrap['ScriptBootstrapAction']['Args'] == [
    's3://shop-data/shopstream',
    '--pii-salt-secret',
    'shopstream/pii-salt',
  ]
  add_steps = next(c for c in commands if c.startswith('aws emr add-steps'))
  steps = json.loads(shlex.split(add_steps)[6])
  assert [s['Name'] for s in steps] == [
    'flink-yarn-session',
    'shopstream-stream',
    'shopstream-backfill',
  ]
  stream = steps[1]['HadoopJarStep']['Args'][2]
  assert (
    'flink_emr_streaming.yaml --kinesis-stream clicks --output s3://shop-data/tables/' in stream
  )
  assert stream.startswith('set -a && . /opt/shopstream/environment && set +a && ')
  backfill = steps[2]['HadoopJarStep']['Args'][2]
  assert '--state-dir /mnt/shopstream/backfill-state' in backfill


@pytest.mark.parametrize(
  'args, problem',
  [
    (['--cluster-id', 'j-1'], 'nothing to deploy'),
    (['--cluster-id', 'j-1', '--backfill-from', '2026-01-01'], 'go together'),
    (
      ['--cluster-id', 'j-1', '--backfill-from', '2026-01-01', '--backfill-to', '2026-01-02'],
      'needs',
    ),
  ],
)
def test_incomplete_deployments_are_refused(args, problem, capsys):
  assert cli.main([*BASE, *SALT_SECRET, *args, '--dry-run']) == 2
  assert problem in capsys.readouterr().err


def test_a_deployment_without_a_pii_salt_secret_is_refused(capsys):
  assert cli.main([*BASE, '--cluster-id', 'j-1', *STREAM, '--dry-run']) == 2
  assert '--pii-salt-secret SECRET_ID is needed' in capsys.readouterr().err


def test_deploys_to_moto_emr_and_s3(s3_endpoint, aws_credentials, capsys):
  s3 = boto3.client('s3', endpoint_url=s3_endpoint, region_name='us-east-1')
  s3.create_bucket(Bucket='shop-data')
  argv = [*BASE, *SALT_SECRET, '--create-cluster', *STREAM, *BACKFILL]
  argv += ['--endpoint-url', s3_endpoint]
  assert cli.main(argv) == 0  # builds the real wheel with pip
  out = capsys.readouterr().out
  keys = {o['Key'] for o in s3.list_objects_v2(Bucket='shop-data')['Contents']}
  assert 'shopstream/dist/shopstream-0.1.0-py3-none-any.whl' in keys
  assert 'shopstream/bootstrap.sh' in keys
  assert 'shopstream/runner_configs/flink_emr_backfill.yaml' in keys

  emr = boto3.client('emr', endpoint_url=s3_endpoint, region_name='us-east-1')
  [cluster] = emr.list_clusters()['Clusters']
  assert f'cluster {cluster["Id"]}: steps' in out
  described = emr.describe_cluster(ClusterId=cluster['Id'])['Cluster']
  assert described['ReleaseLabel'] == 'emr-7.4.0'
  steps = emr.list_steps(ClusterId=cluster['Id'])['Steps']
  assert sorted(s['Name'] for s in steps) == [
    'flink-yarn-session',
    'shopstream-backfill',
    'shopstream-stream',
  ]
  actions = emr.list_bootstrap_actions(ClusterId=cluster['Id'])['BootstrapActions']
  assert actions[0]['ScriptPath'] == 's3://shop-data/shopstream/bootstrap.sh'


BOOTSTRAP = os.path.join(PROJECT_ROOT, 'deploy', 'emr', 'bootstrap.sh')


def bash(script: str, stdin: str = '', **env: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    ['bash', '-c', f'source {BOOTSTRAP} && {script}'],
    input=stdin,
    capture_output=True,
    text=True,
    env={**os.environ, **env},
    check=True,
  )


def test_the_secrets_become_the_settings_of_every_sdk_harness(tmp_path):
  """bootstrap.sh turns the PII salt and an MSK SCRAM secret (on stdin, as it pipes them
  from the AWS CLI) into the environment file; the boot wrapper exports it to the SDK
  harness it starts."""
  kafka_secret = json.dumps({'username': 'shop', 'password': "p'w $(not run)"})
  env_file = tmp_path / 'environment'
  python = {'PYTHON': sys.executable}
  env_file.write_text(bash('salt_environment', stdin='salt with spaces\n', **python).stdout)
  with env_file.open('a') as f:
    f.write(bash('kafka_environment', stdin=kafka_secret, **python).stdout)
  (tmp_path / 'boot.bin').write_text('#!/bin/bash\nenv\n')
  bash(f'write_boot_wrapper {tmp_path} {tmp_path}/venv')
  seen = subprocess.run([str(tmp_path / 'boot')], capture_output=True, text=True, check=True)
  settings = dict(line.split('=', 1) for line in seen.stdout.splitlines() if '=' in line)
  assert settings['SHOPSTREAM_PII_SALT'] == 'salt with spaces'
  assert settings['SHOPSTREAM_KAFKA_SECURITY_PROTOCOL'] == 'SASL_SSL'
  assert settings['SHOPSTREAM_KAFKA_SASL_MECHANISM'] == 'SCRAM-SHA-512'
  assert settings['SHOPSTREAM_KAFKA_USERNAME'] == 'shop'
  assert settings['SHOPSTREAM_KAFKA_PASSWORD'] == "p'w $(not run)"


def test_bootstrap_refuses_to_install_without_a_pii_salt_secret():
  done = subprocess.run(
    ['bash', BOOTSTRAP, 's3://bucket/shopstream'], capture_output=True, text=True
  )
  assert done.returncode == 2 and '--pii-salt-secret ID is needed' in done.stderr


def test_without_an_environment_file_the_wrapper_sets_no_kafka_settings(tmp_path):
  (tmp_path / 'boot.bin').write_text('#!/bin/bash\nenv\n')
  bash(f'write_boot_wrapper {tmp_path} {tmp_path}/venv')
  seen = subprocess.run([str(tmp_path / 'boot')], capture_output=True, text=True, check=True)
  assert 'SHOPSTREAM_KAFKA_PASSWORD' not in seen.stdout
  assert 'RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1' in seen.stdout


def test_iceberg_backfills_publish_to_glue_beside_the_parquet_stream(capsys):
  flags = [*BASE, *SALT_SECRET, '--cluster-id', 'j-1', *STREAM, *BACKFILL, '--iceberg']
  assert cli.main([*flags, '--dry-run']) == 0
  add_steps = next(c for c in capsys.readouterr().out.splitlines() if 'aws emr add-steps' in c)
  stream, backfill = (
    s['HadoopJarStep']['Args'][2] for s in json.loads(shlex.split(add_steps)[6])[1:]
  )
  assert '--output s3://shop-data/tables/' in stream and 'iceberg' not in stream
  settings = backfill.removeprefix(deploy_emr.WITH_ENVIRONMENT).split(' /opt/')[0].split()
  assert dict(setting.split('=') for setting in settings) == {
    'PYICEBERG_CATALOG__SHOPSTREAM__TYPE': 'glue',
    'PYICEBERG_CATALOG__SHOPSTREAM__GLUE__REGION': 'us-east-1',
    'PYICEBERG_CATALOG__SHOPSTREAM__S3__REGION': 'us-east-1',
  }
  assert 'backfill --table-format iceberg' in backfill
  assert '--output s3://shop-data/iceberg/' in backfill
