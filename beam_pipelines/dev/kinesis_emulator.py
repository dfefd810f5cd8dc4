"""kinesis-local, the npm Kinesis emulator, started on free loopback ports.

Used by the tests, the streaming demo and the read-rate benchmark; `make`
installs it into node_modules/.

    with running_emulator() as endpoint:
        boto3.client('kinesis', endpoint_url=endpoint, ...)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Optional

from beam_pipelines.dev.local_services import PROJECT_ROOT, free_port, stop, wait_for_port

EMULATOR_DIR = os.path.join(PROJECT_ROOT, 'node_modules', 'kinesis-local')


def start_emulator(plain: int, tls: int, persist_dir: Optional[str] = None) -> subprocess.Popen:
  """Starts kinesis-local on the given ports; with ``persist_dir`` its data outlives a restart."""
  if not os.path.exists(os.path.join(EMULATOR_DIR, 'main.js')):
    raise RuntimeError('kinesis-local is not installed: run `make install`')
  env = {
    **os.environ,
    'KINESIS_MOCK_PLAIN_PORT': str(plain),
    'KINESIS_MOCK_TLS_PORT': str(tls),
    'KINESIS_MOCK_CERT_PATH': os.path.join(EMULATOR_DIR, 'server.json'),
    'LOG_LEVEL': 'WARN',
  }
  if persist_dir:
    env.update(
      SHOULD_PERSIST_DATA='true',
      PERSIST_PATH=persist_dir,
      PERSIST_INTERVAL='200ms',
      LOAD_DATA_IF_EXISTS='true',
    )
  # Its output goes to a file, so that a failed start can say why.
  log = tempfile.NamedTemporaryFile(prefix=f'kinesis-local-{plain}-', suffix='.log', delete=False)
  with log:
    process = subprocess.Popen(
      ['node', os.path.join(EMULATOR_DIR, 'main.js')],
      env=env,
      stdout=log,
      stderr=subprocess.STDOUT,
    )
  try:
    wait_for_port(plain, process, 'kinesis-local', log=log.name)
  finally:
    os.remove(log.name)  # the open process keeps writing to it unnamed
  return process


@contextlib.contextmanager
def running_emulator() -> Iterator[str]:
  """Starts kinesis-local on free loopback ports, yields its plain-HTTP endpoint, stops it by PID."""
  plain = free_port()
  process = start_emulator(plain, free_port())
  try:
    yield f'http://127.0.0.1:{plain}'
  finally:
    stop(process)
