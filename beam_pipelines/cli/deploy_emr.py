"""``shopstream deploy emr``: the streaming job and a backfill on Flink on Amazon EMR.

What it does, in order (``--dry-run`` prints each as the equivalent ``aws``
command and does nothing):

1. builds the project wheel (``pip wheel``);
2. uploads the wheel, ``runner_configs/`` and ``deploy/emr/bootstrap.sh`` to
   ``s3://BUCKET/shopstream/``;
3. with ``--create-cluster``: starts an EMR 7.4+ cluster (Flink 1.19) whose
   bootstrap action installs Python 3.11, the wheel, Beam's boot binary and
   the Flink job server jar on every node (deploy/emr/bootstrap.sh);
4. adds EMR steps: a detached Flink YARN session, the streaming pipeline
   (runner_configs/flink_emr_streaming.yaml) and, with ``--backfill-from`` /
   ``--backfill-to``, a backfill (runner_configs/flink_emr_backfill.yaml).

AWS credentials come from the standard chain only; nothing secret is
printed or written.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any, Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_RELEASE = 'emr-7.4.0'  # the first release with Flink 1.19.1
PREFIX = 'shopstream'
REMOTE_HOME = '/opt/shopstream'  # where bootstrap.sh installs everything
STATE_DIR = '/mnt/shopstream/backfill-state'  # local disk of the primary node


@dataclasses.dataclass
class DeployConfig:
  bucket: str
  region: Optional[str] = None
  cluster_id: Optional[str] = None
  create_cluster: bool = False
  release: str = DEFAULT_RELEASE
  instance_type: str = 'm6i.xlarge'
  core_nodes: int = 2
  stream: Optional[str] = None
  dimension: tuple[str, ...] = ()  # catalog-csv=s3://..., taxonomy=s3://...
  backfill_from: Optional[str] = None
  backfill_to: Optional[str] = None
  backfill_sources: tuple[str, ...] = ()
  endpoint_url: Optional[str] = None  # a local emulator (tests)
  pii_salt_secret: Optional[str] = None  # AWS Secrets Manager id of SHOPSTREAM_PII_SALT
  iceberg: bool = False  # the backfill publishes Iceberg tables in AWS Glue

  def validate(self) -> None:
    if not self.bucket or '/' in self.bucket:
      raise ValueError('--bucket takes a bucket name, e.g. my-shop-data')
    if not self.pii_salt_secret:
      raise ValueError(
        '--pii-salt-secret SECRET_ID is needed: the AWS Secrets Manager secret whose string '
        'is the PII salt (e.g. `aws secretsmanager create-secret --name shopstream/pii-salt '
        '--secret-string "$(openssl rand -hex 32)"`)'
      )
    if bool(self.cluster_id) == self.create_cluster:
      raise ValueError('give either --cluster-id j-... or --create-cluster')
    if not self.stream and not self.backfill_from:
      raise ValueError('nothing to deploy: give --stream NAME and/or --backfill-from/--backfill-to')
    if bool(self.backfill_from) != bool(self.backfill_to):
      raise ValueError('--backfill-from and --backfill-to go together')
    if self.backfill_from and not self.backfill_sources:
      raise ValueError('a backfill needs --backfill-source KIND=s3://... (repeatable)')
    if self.core_nodes < 1:
      raise ValueError('--core-nodes must be at least 1')

  @property
  def artifacts(self) -> str:
    return f's3://{self.bucket}/{PREFIX}'


@dataclasses.dataclass
class Action:
  """One deployment step: what it is, the equivalent aws command, and how to do it."""

  description: str
  command: str
  run: Callable[[dict], None]  # gets the state shared by the actions (cluster id, wheel)


def _aws(*words: str, region: Optional[str]) -> str:
  return shlex.join(['aws', *words, *(['--region', region] if region else [])])


def _shopstream(*words: str) -> str:
  return shlex.join([f'{REMOTE_HOME}/venv/bin/shopstream', *words])


def streaming_command(config: DeployConfig) -> str:
  words = [
    'run',
    '--runner-config',
    f'{REMOTE_HOME}/runner_configs/flink_emr_streaming.yaml',
    '--kinesis-stream',
    config.stream,
    '--output',
    f's3://{config.bucket}/tables/',
    f'--state_backend_storage_path=s3://{config.bucket}/flink/checkpoints',
  ]
  if config.region:
    words += ['--kinesis-region', config.region]
  for spec in config.dimension:
    words += ['--source', spec]
  return _shopstream(*words)


def backfill_command(config: DeployConfig) -> str:
  words = [
    'backfill',
    *(['--table-format', 'iceberg'] if config.iceberg else []),
    '--runner-config',
    f'{REMOTE_HOME}/runner_configs/flink_emr_backfill.yaml',
    '--from',
    config.backfill_from,
    '--to',
    config.backfill_to,
    '--output',
    backfill_output(config),
    '--state-dir',
    STATE_DIR,
    '--progress',
    'never',
  ]
  for spec in (*config.backfill_sources, *config.dimension):
    words += ['--source', spec]
  return glue_catalog_settings(config) + _shopstream(*words)


def backfill_output(config: DeployConfig) -> str:
  # A stream writes Parquet only: Iceberg tables need an output of their own.
  return f's3://{config.bucket}/{"iceberg" if config.iceberg else "tables"}/'


def glue_catalog_settings(config: DeployConfig) -> str:
  """Environment settings (no secrets) that make pyiceberg's catalog 'shopstream' AWS
  Glue, where Athena and EMR find the tables."""
  if not config.iceberg:
    return ''
  settings = {'PYICEBERG_CATALOG__SHOPSTREAM__TYPE': 'glue'}
  if config.region:
    settings['PYICEBERG_CATALOG__SHOPSTREAM__GLUE__REGION'] = config.region
    settings['PYICEBERG_CATALOG__SHOPSTREAM__S3__REGION'] = config.region
  return ''.join(f'{key}={shlex.quote(value)} ' for key, value in settings.items())


# The salt (and other secrets) come from the file the bootstrap action wrote, never
# from the step's arguments, which EMR shows to anyone who can list steps.
WITH_ENVIRONMENT = f'set -a && . {REMOTE_HOME}/environment && set +a && '


def _step(name: str, command: str, on_failure: str = 'CONTINUE') -> dict[str, Any]:
  return {
    'Name': name,
    'ActionOnFailure': on_failure,
    'HadoopJarStep': {
      'Jar': 'command-runner.jar',
      'Args': ['bash', '-c', WITH_ENVIRONMENT + command],
    },
  }


def steps(config: DeployConfig) -> list[dict[str, Any]]:
  """The EMR steps: a Flink session on YARN, then the jobs submitted to it."""
  result = [
    _step(
      'flink-yarn-session',
      'flink-yarn-session -d -jm 2048m -tm 4096m -s 2 && sleep 20',
      on_failure='CANCEL_AND_WAIT',
    )
  ]
  if config.stream:
    # Detached: the step ends once the job is submitted; the job keeps running.
    result.append(
      _step('shopstream-stream', f'nohup {streaming_command(config)} >stream.log 2>&1 &')
    )
  if config.backfill_from:
    result.append(_step('shopstream-backfill', backfill_command(config)))
  return result


def cluster_request(config: DeployConfig) -> dict[str, Any]:
  """The RunJobFlow request of --create-cluster."""
  return {
    'Name': 'shopstream',
    'ReleaseLabel': config.release,
    'Applications': [{'Name': 'Flink'}, {'Name': 'Hadoop'}],
    'Instances': {
      'InstanceGroups': [
        {
          'Name': 'primary',
          'InstanceRole': 'MASTER',
          'InstanceType': config.instance_type,
          'InstanceCount': 1,
        },
        {
          'Name': 'core',
          'InstanceRole': 'CORE',
          'InstanceType': config.instance_type,
          'InstanceCount': config.core_nodes,
        },
      ],
      'KeepJobFlowAliveWhenNoSteps': True,
    },
    'BootstrapActions': [
      {
        'Name': 'shopstream',
        'ScriptBootstrapAction': {
          'Path': f'{config.artifacts}/bootstrap.sh',
          'Args': [config.artifacts, '--pii-salt-secret', config.pii_salt_secret],
        },
      }
    ],
    'Configurations': [
      {
        'Classification': 'flink-conf',
        'Properties': {'state.backend.type': 'rocksdb', 'taskmanager.numberOfTaskSlots': '2'},
      }
    ],
    'JobFlowRole': 'EMR_EC2_DefaultRole',
    'ServiceRole': 'EMR_DefaultRole',
    'LogUri': f's3://{config.bucket}/emr-logs/',
  }


def wheel_name() -> str:
  """The file name ``pip wheel`` gives this project (version from pyproject.toml)."""
  import tomllib

  with open(os.path.join(PROJECT_ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  return f'{project["name"]}-{project["version"]}-py3-none-any.whl'


def plan(config: DeployConfig, wheel: Optional[str] = None) -> list[Action]:
  """The deployment as actions; executing them in order deploys."""
  config.validate()
  region = config.region

  def clients(service: str):
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=config.endpoint_url)

  def build_wheel(state: dict) -> None:
    if wheel:
      state['wheel'] = wheel
      return
    out = tempfile.mkdtemp(prefix='shopstream-wheel-')
    subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--quiet', '-w', out, PROJECT_ROOT],
      check=True,
    )
    state['wheel'] = glob.glob(os.path.join(out, 'shopstream-*.whl'))[0]

  def uploads(wheel_path: str) -> list[tuple[str, str]]:
    """(local file, S3 key) of everything the nodes need."""
    files = [(wheel_path, f'dist/{os.path.basename(wheel_path)}')]
    files.append((os.path.join(PROJECT_ROOT, 'deploy', 'emr', 'bootstrap.sh'), 'bootstrap.sh'))
    for path in sorted(glob.glob(os.path.join(PROJECT_ROOT, 'runner_configs', '*.yaml'))):
      files.append((path, f'runner_configs/{os.path.basename(path)}'))
    return [(local, f'{PREFIX}/{key}') for local, key in files]

  def upload(state: dict) -> None:
    s3 = clients('s3')
    for local, key in uploads(state['wheel']):
      s3.upload_file(local, config.bucket, key)

  def create(state: dict) -> None:
    state['cluster_id'] = clients('emr').run_job_flow(**cluster_request(config))['JobFlowId']

  def add_steps(state: dict) -> None:
    response = clients('emr').add_job_flow_steps(
      JobFlowId=state.get('cluster_id') or config.cluster_id, Steps=steps(config)
    )
    state['step_ids'] = response['StepIds']

  actions = [
    Action(
      'build the project wheel',
      shlex.join(['pip', 'wheel', '--no-deps', '-w', 'dist', '.']) if not wheel else f'# {wheel}',
      build_wheel,
    ),
    Action(
      f'upload the wheel, runner_configs/ and bootstrap.sh to {config.artifacts}/',
      '\n'.join(
        _aws(
          's3',
          'cp',
          os.path.relpath(local, PROJECT_ROOT),
          f's3://{config.bucket}/{key}',
          region=region,
        )
        for local, key in uploads(wheel or os.path.join(PROJECT_ROOT, 'dist', wheel_name()))
      ),
      upload,
    ),
  ]
  if config.create_cluster:
    actions.append(
      Action(
        f'create an EMR cluster ({config.release}: Flink 1.19)',
        _aws(
          'emr',
          'create-cluster',
          '--cli-input-json',
          json.dumps(cluster_request(config), sort_keys=True),
          region=region,
        )
        + '  # then: CLUSTER_ID=<the JobFlowId it prints>',
        create,
      )
    )
  actions.append(
    Action(
      'add the steps: Flink YARN session, then '
      + ' and '.join(s['Name'] for s in steps(config)[1:]),
      _aws(
        'emr',
        'add-steps',
        '--cluster-id',
        config.cluster_id or 'CLUSTER_ID',
        '--steps',
        json.dumps(steps(config), sort_keys=True),
        region=region,
      ).replace(' CLUSTER_ID ', ' "$CLUSTER_ID" '),
      add_steps,
    )
  )
  return actions


def describe(actions: list[Action]) -> str:
  lines = []
  for n, action in enumerate(actions, 1):
    lines.append(f'# {n}. {action.description}')
    lines.append(action.command)
  return '\n'.join(lines) + '\n'


def execute(actions: list[Action]) -> dict:
  state: dict = {}
  for n, action in enumerate(actions, 1):
    print(f'{n}/{len(actions)} {action.description}', flush=True)
    action.run(state)
  return state
