"""Shared test helpers: pipelines on the FnApiRunner, a fixed salt and clock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from transforms.pseudonymize import Pseudonymizer

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
TEST_SALT = b'test-salt'
# 2026-06-01T00:00:00Z: "now" for every test, so plausibility checks are stable.
NOW_US = 1_780_272_000_000_000


def fixture_path(name: str) -> str:
  return os.path.join(FIXTURES, name)


def beam_pipeline() -> TestPipeline:
  """A TestPipeline on the FnApiRunner: the engine the direct.yaml config names."""
  return TestPipeline(runner='FnApiRunner', options=PipelineOptions([]))


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
  return Pseudonymizer(TEST_SALT)


@pytest.fixture(autouse=True)
def _test_salt(monkeypatch):
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', TEST_SALT.decode())


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='session')
def s3_endpoint():
  """A moto S3 server on a free loopback port, stopped by PID at the end."""
  port = free_port()
  server = subprocess.Popen(
      [os.path.join(os.path.dirname(sys.executable), 'moto_server'), '-H', '127.0.0.1',
       '-p', str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wait_for_port(port, server, 'moto_server')
  try:
    yield f'http://127.0.0.1:{port}'
  finally:
    stop(server)


KINESIS_LOCAL = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'node_modules', 'kinesis-local')


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout_s: float = 60) -> None:
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      return
    except OSError:
      if process.poll() is not None or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f'{what} did not start on port {port}') from None
      time.sleep(0.1)


@pytest.fixture(scope='session')
def kinesis_endpoint():
  """kinesis-local (npm; installed by `make`) on free loopback ports, stopped by PID."""
  plain, tls = free_port(), free_port()
  env = {**os.environ, 'KINESIS_MOCK_PLAIN_PORT': str(plain), 'KINESIS_MOCK_TLS_PORT': str(tls),
         'KINESIS_MOCK_CERT_PATH': os.path.join(KINESIS_LOCAL, 'server.json'),
         'LOG_LEVEL': 'WARN'}
  server = subprocess.Popen(['node', os.path.join(KINESIS_LOCAL, 'main.js')], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wait_for_port(plain, server, 'kinesis-local')
  try:
    yield f'http://127.0.0.1:{plain}'
  finally:
    stop(server)


def stop(server: subprocess.Popen) -> None:
  server.terminate()
  try:
    server.wait(timeout=5)
  except subprocess.TimeoutExpired:
    server.kill()
    server.wait(timeout=5)


@pytest.fixture
def aws_credentials(monkeypatch):
  """Credentials for the emulators, through the standard AWS chain (the environment)."""
  monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'testing')
  monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'testing')
  monkeypatch.setenv('AWS_DEFAULT_REGION', 'us-east-1')
