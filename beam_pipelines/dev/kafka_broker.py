"""Apache Kafka, one node in KRaft mode (broker and controller), on free loopback ports.

The jars are Maven Central's (deploy/kafka/broker-pom.xml), which `make install`
copies into .tools/kafka/lib. Used by the tests and by `shopstream dev kafka`.

    with running_broker() as bootstrap:   # '127.0.0.1:PORT'
        Producer({'bootstrap.servers': bootstrap})

A broker started again on the same ``data_dir`` (and ports) keeps its topics
and offsets: a restart, as the tests of a reader need.
With ``sasl_user`` the clients' listener is SASL_PLAINTEXT and takes that one
SCRAM-SHA-256 user, created when the data directory is formatted.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import NamedTuple, Optional

from beam_pipelines.dev.local_services import PROJECT_ROOT, free_port, stop, tail

KAFKA_LIB = os.path.join(PROJECT_ROOT, '.tools', 'kafka', 'lib')
# A broker and a controller in one JVM: 512 MB is plenty for tests and a demo,
# and leaves the rest of a small machine to Flink and the pipeline.
_JAVA_OPTIONS = ['-Xms128m', '-Xmx512m', '-XX:+UseSerialGC', '-Djava.awt.headless=true']
_STARTED = 'Kafka Server started'


class SaslListener(NamedTuple):
  """A SASL_PLAINTEXT listener with SCRAM-SHA-256 and one user, beside the plaintext one."""

  port: int
  username: str
  password: str


SCRAM = 'SCRAM-SHA-256'


def broker_properties(
  port: int, controller_port: int, log_dir: str, sasl: Optional[SaslListener] = None
) -> str:
  """server.properties of a single-node cluster; one replica of everything."""
  listeners = [f'PLAINTEXT://127.0.0.1:{port}']
  protocols = ['PLAINTEXT:PLAINTEXT', 'CONTROLLER:PLAINTEXT']
  extra = []
  if sasl is not None:
    listeners.append(f'SASL_PLAINTEXT://127.0.0.1:{sasl.port}')
    protocols.append('SASL_PLAINTEXT:SASL_PLAINTEXT')
    extra = [
      f'sasl.enabled.mechanisms={SCRAM}',
      f'listener.name.sasl_plaintext.{SCRAM.lower()}.sasl.jaas.config='
      'org.apache.kafka.common.security.scram.ScramLoginModule required;',
    ]
  return '\n'.join(
    [
      'process.roles=broker,controller',
      'node.id=1',
      f'controller.quorum.voters=1@127.0.0.1:{controller_port}',
      f'listeners={",".join(listeners)},CONTROLLER://127.0.0.1:{controller_port}',
      f'advertised.listeners={",".join(listeners)}',
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      f'listener.security.protocol.map={",".join(protocols)}',
      *extra,
      f'log.dirs={log_dir}',
      'offsets.topic.replication.factor=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      # A consumer group starts at once instead of waiting for more members.
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=false',
      '',
    ]
  )


def _java(main_class: str, *args: str) -> list[str]:
  if not os.path.isdir(KAFKA_LIB):
    raise RuntimeError('Kafka is not installed: run `make install`')
  return ['java', *_JAVA_OPTIONS, '-cp', os.path.join(KAFKA_LIB, '*'), main_class, *args]


def start_broker(
  port: int,
  controller_port: int,
  data_dir: str,
  timeout_s: float = 90,
  sasl: Optional[SaslListener] = None,
) -> subprocess.Popen:
  """Starts a broker on the ports, its log and data in ``data_dir`` (formatted once; the SASL
  user, if any, is created then)."""
  log_dir = os.path.join(data_dir, 'data')
  config = os.path.join(data_dir, 'server.properties')
  with open(config, 'w') as f:
    f.write(broker_properties(port, controller_port, log_dir, sasl))
  if not os.path.exists(os.path.join(log_dir, 'meta.properties')):
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('=')
    # As --cluster-id=ID: an id may start with '-' (1 in 64), and as a separate
    # argument the tool then read it as an option and refused to format (seen).
    users = (
      ['--add-scram', f'{SCRAM}=[name={sasl.username},password={sasl.password}]'] if sasl else []
    )
    subprocess.run(
      _java(
        'kafka.tools.StorageTool', 'format', f'--cluster-id={cluster_id}', '-c', config, *users
      ),
      check=True,
      capture_output=True,
    )
  log = os.path.join(data_dir, 'broker.log')
  with open(log, 'ab') as out:
    process = subprocess.Popen(
      _java('kafka.Kafka', config), stdout=out, stderr=subprocess.STDOUT, cwd=data_dir
    )
  deadline = time.monotonic() + timeout_s
  start = os.path.getsize(log) if os.path.exists(log) else 0
  while True:
    with open(log, 'rb') as f:
      f.seek(start)
      if _STARTED.encode() in f.read():
        return process
    if process.poll() is not None or time.monotonic() > deadline:
      process.kill()
      raise RuntimeError(f'Kafka did not start on port {port}{tail(log)}')
    time.sleep(0.2)


@contextlib.contextmanager
def running_broker(
  data_dir: Optional[str] = None, sasl_user: Optional[tuple[str, str]] = None
) -> Iterator[str]:
  """Starts a broker on free loopback ports, yields its bootstrap address, stops it.

  With ``sasl_user`` (username, password) the address is that of a SASL_PLAINTEXT
  listener taking that user by SCRAM-SHA-256.
  """
  with contextlib.ExitStack() as stack:
    if data_dir is None:
      data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix='shopstream-kafka-'))
    port = free_port()
    sasl = SaslListener(free_port(), *sasl_user) if sasl_user else None
    process = start_broker(port, free_port(), data_dir, sasl=sasl)
    try:
      yield f'127.0.0.1:{sasl.port if sasl else port}'
    finally:
      stop(process)


def serve(port: int, data_dir: Optional[str] = None) -> int:
  """Runs a broker in the foreground until SIGTERM or Ctrl-C: `shopstream dev kafka`."""
  stopping = threading.Event()
  for signal_number in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signal_number, lambda *_: stopping.set())
  with contextlib.ExitStack() as stack:
    if data_dir is None:
      data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix='shopstream-kafka-'))
    os.makedirs(data_dir, exist_ok=True)
    process = start_broker(port, free_port(), data_dir)
    print(f'Kafka broker (KRaft, one node) at 127.0.0.1:{port}; data in {data_dir}', flush=True)
    print(f'  --kafka-bootstrap 127.0.0.1:{port}; stop with Ctrl-C or SIGTERM', flush=True)
    try:
      while not stopping.wait(0.5):
        if process.poll() is not None:
          print(
            f'the broker exited with code {process.returncode}{tail(os.path.join(data_dir, "broker.log"))}'
          )
          return 1
    finally:
      stop(process)
  return 0
