"""kinesis-local, the npm Kinesis emulator, started on free loopback ports.

Used by the tests, the streaming demo and the read-rate benchmark; `make`
installs it into node_modules/.

    with running_emulator() as endpoint:
        boto3.client('kinesis', endpoint_url=endpoint, ...)
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMULATOR_DIR = os.path.join(PROJECT_ROOT, 'node_modules', 'kinesis-local')


# Below Linux's ephemeral range (32768-60999): the OS never hands these out as
# the local port of an outgoing connection, so a port an emulator gives up
# while it restarts stays free for it. (A port from bind(0) is ephemeral and
# can be taken meanwhile by any client socket of a busy test run.)
_PORT_RANGE = (20000, 32000)
# Not the shared `random`: test plugins may seed it alike in every worker.
_RANDOM = random.SystemRandom()


def free_port() -> int:
  """A loopback port that is free now and outside the ephemeral range."""
  for _ in range(100):
    port = _RANDOM.randrange(*_PORT_RANGE)
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', port))
      except OSError:
        continue
      return port
  raise RuntimeError(f'no free port in {_PORT_RANGE}')


def wait_for_port(
  port: int, process: subprocess.Popen, what: str, timeout_s: float = 60, log: Optional[str] = None
) -> None:
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      return
    except OSError:
      if process.poll() is not None or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f'{what} did not start on port {port}{_tail(log)}') from None
      time.sleep(0.1)


def _tail(log: Optional[str], lines: int = 20) -> str:
  if not log or not os.path.exists(log):
    return ''
  with open(log, encoding='utf-8', errors='replace') as f:
    return ':\n' + ''.join(f.readlines()[-lines:])


def stop(process: subprocess.Popen) -> None:
  process.terminate()
  try:
    process.wait(timeout=5)
  except subprocess.TimeoutExpired:
    process.kill()  # with persistence on, kinesis-local ignores SIGTERM (measured)
    process.wait(timeout=5)


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
