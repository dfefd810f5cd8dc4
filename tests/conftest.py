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
  deadline = time.monotonic() + 30
  while True:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      break
    except OSError:
      if server.poll() is not None or time.monotonic() > deadline:
        server.kill()
        raise RuntimeError('moto_server did not start') from None
      time.sleep(0.1)
  try:
    yield f'http://127.0.0.1:{port}'
  finally:
    server.terminate()
    server.wait(timeout=10)
