"""What the local services the tests and demos start share: free ports, readiness, stopping.

kinesis-local (kinesis_emulator.py), Kafka (kafka_broker.py) and Flink
(local_flink.py) each run as a child process on loopback ports.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from typing import Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
        raise RuntimeError(f'{what} did not start on port {port}{tail(log)}') from None
      time.sleep(0.1)


def tail(log: Optional[str], lines: int = 20) -> str:
  if not log or not os.path.exists(log):
    return ''
  with open(log, encoding='utf-8', errors='replace') as f:
    return ':\n' + ''.join(f.readlines()[-lines:])


def stop(process: subprocess.Popen) -> None:
  process.terminate()
  try:
    process.wait(timeout=5)
  except subprocess.TimeoutExpired:
    process.kill()  # kinesis-local with persistence on ignores SIGTERM (measured)
    process.wait(timeout=5)
