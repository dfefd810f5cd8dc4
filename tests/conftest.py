"""Shared test helpers: pipelines on the FnApiRunner, a fixed salt and clock."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from beam_pipelines.dev.kafka_broker import running_broker
from beam_pipelines.dev.kinesis_emulator import running_emulator
from beam_pipelines.dev.local_services import free_port, stop, wait_for_port
from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from beam_pipelines.pipelines.runner_config import IN_PROCESS_RUNNER
from transforms.enrich.pseudonymize import Pseudonymizer

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
TEST_SALT = b'test-salt'
# 2026-06-01T00:00:00Z: "now" for every test, so plausibility checks are stable.
NOW_US = 1_780_272_000_000_000


def fixture_path(name: str) -> str:
  return os.path.join(FIXTURES, name)


def beam_pipeline() -> TestPipeline:
  """A TestPipeline on the FnApiRunner: the engine the direct.yaml config names."""
  return TestPipeline(runner=IN_PROCESS_RUNNER, options=PipelineOptions([]))


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
  return Pseudonymizer(TEST_SALT)


@pytest.fixture(autouse=True)
def _test_salt(monkeypatch):
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', TEST_SALT.decode())


@pytest.fixture(scope='module')
def module_salt():
  """The salt for module-scoped fixtures, which run before the per-test one."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('SHOPSTREAM_PII_SALT', TEST_SALT.decode())
    yield


@pytest.fixture(scope='session')
def s3_endpoint():
  """A moto S3 server on a free loopback port, stopped by PID at the end."""
  port = free_port()
  server = subprocess.Popen(
    [
      os.path.join(os.path.dirname(sys.executable), 'moto_server'),
      '-H',
      '127.0.0.1',
      '-p',
      str(port),
    ],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  wait_for_port(port, server, 'moto_server')
  try:
    yield f'http://127.0.0.1:{port}'
  finally:
    stop(server)


@pytest.fixture(scope='session')
def kinesis_endpoint():
  """kinesis-local (npm; installed by `make`) on free loopback ports, stopped by PID."""
  with running_emulator() as endpoint:
    yield endpoint


@pytest.fixture(scope='session')
def kafka_bootstrap():
  """A one-node Kafka broker (jars from `make install`) on free loopback ports."""
  with running_broker() as bootstrap:
    yield bootstrap


@pytest.fixture
def aws_credentials(monkeypatch):
  """Credentials for the emulators, through the standard AWS chain (the environment)."""
  monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'testing')
  monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'testing')
  monkeypatch.setenv('AWS_DEFAULT_REGION', 'us-east-1')


def sample_run_flags(folder, seed: int, events: int = 2500, days: int = 3) -> list[str]:
  """Generates a sample (clickstream, access log, orders, catalog, taxonomy) into
  ``folder``; returns the `shopstream run` flags that read all of it, reproducibly."""
  generate(GeneratorConfig(output_dir=str(folder), events=events, days=days, seed=seed))
  return [
    '--source',
    f'events-jsonl={folder}/events-*.jsonl.gz',
    '--source',
    f'access-log={folder}/access.log',
    '--source',
    f'orders-csv={folder}/orders.csv',
    '--source',
    f'catalog-csv={folder}/catalog.csv',
    '--source',
    f'taxonomy={folder}/taxonomy.txt',
    '--reference-time',
    '2026-06-01T00:00:00Z',
    '--progress',
    'never',
  ]
