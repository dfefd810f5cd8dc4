"""Kafka topics for shopstream: creating one, and putting canonical JSON events into it.

``shopstream kafka create-topic`` and ``shopstream kafka put`` (the Kafka twins
of the Kinesis commands). Events are keyed by session key, so a key's events
share a partition and keep their order; event_replay.py makes the events.
The client is confluent-kafka (librdkafka).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Optional

from beam_pipelines.io.event_replay import canonical_json
from transforms.records import Event

DEFAULT_BOOTSTRAP = 'localhost:9092'
# How long a command waits for the cluster before it says it cannot reach it.
_TIMEOUT_S = 30


# Security settings come from the environment of whoever runs a client (the CLI, each
# worker), never from options: credentials stay out of the job graph and of logs.
SECURITY_PROTOCOL = 'SHOPSTREAM_KAFKA_SECURITY_PROTOCOL'  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
SASL_MECHANISM = 'SHOPSTREAM_KAFKA_SASL_MECHANISM'  # SCRAM-SHA-512 (default), SCRAM-SHA-256, PLAIN
USERNAME = 'SHOPSTREAM_KAFKA_USERNAME'
PASSWORD = 'SHOPSTREAM_KAFKA_PASSWORD'
CA_LOCATION = 'SHOPSTREAM_KAFKA_CA_LOCATION'  # a PEM file of CAs to trust, for SSL/SASL_SSL
PROTOCOLS = ('PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL')


def client_config(bootstrap: str) -> dict:
  """librdkafka settings of a client: the bootstrap address and the environment's security."""
  protocol = os.environ.get(SECURITY_PROTOCOL, 'PLAINTEXT').upper()
  if protocol not in PROTOCOLS:
    raise ValueError(f'{SECURITY_PROTOCOL}={protocol!r} is not one of {", ".join(PROTOCOLS)}')
  config = {'bootstrap.servers': bootstrap, 'security.protocol': protocol}
  if protocol.startswith('SASL'):
    missing = [name for name in (USERNAME, PASSWORD) if not os.environ.get(name)]
    if missing:
      raise ValueError(f'{SECURITY_PROTOCOL}={protocol} needs {" and ".join(missing)} set')
    config.update(
      {
        'sasl.mechanism': os.environ.get(SASL_MECHANISM, 'SCRAM-SHA-512'),
        'sasl.username': os.environ[USERNAME],
        'sasl.password': os.environ[PASSWORD],
      }
    )
  if protocol.endswith('SSL') and os.environ.get(CA_LOCATION):
    config['ssl.ca.location'] = os.environ[CA_LOCATION]
  return config


class _Errors(list):
  """librdkafka's error callback: what went wrong while a client connected."""

  def __call__(self, error) -> None:
    self.append(error)


def cluster_metadata(client, bootstrap: str, errors: _Errors, topic: Optional[str] = None):
  """The client's metadata of the cluster (or of one topic); a clear ValueError when the
  cluster refuses the credentials or does not answer within _TIMEOUT_S."""
  from confluent_kafka import KafkaError, KafkaException

  deadline = time.monotonic() + _TIMEOUT_S
  while True:
    client.poll(0)  # serves the error callback
    if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
      raise ValueError(
        f'Kafka at {bootstrap} refused the credentials of {USERNAME} / {PASSWORD} '
        f'({SASL_MECHANISM} {os.environ.get(SASL_MECHANISM, "SCRAM-SHA-512")})'
      )
    try:
      return client.list_topics(topic, timeout=1)
    except KafkaException as e:
      if time.monotonic() > deadline:
        raise ValueError(f'no Kafka cluster answered at {bootstrap}: {e}') from None


def with_retries(fn, *args, timeout_s: float = _TIMEOUT_S, **kwargs):
  """``fn(*args, **kwargs)``, retried while Kafka answers with a transient error.

  A broker just started answers group calls (committed offsets, commits)
  with "not coordinator" until it has loaded the group's coordinator: seen
  for several seconds after a restart.
  """
  from confluent_kafka import KafkaError, KafkaException

  transient = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
  }
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      return fn(*args, **kwargs)
    except KafkaException as e:
      error = e.args[0]
      if not (error.retriable() or error.code() in transient) or time.monotonic() > deadline:
        raise
    time.sleep(0.5)


def topic_partitions(bootstrap: str, topic: str) -> list[int]:
  """The topic's partition ids; a clear ValueError if the topic does not exist."""
  from confluent_kafka.admin import AdminClient

  errors = _Errors()
  admin = AdminClient({**client_config(bootstrap), 'error_cb': errors})
  metadata = cluster_metadata(admin, bootstrap, errors, topic).topics[topic]
  if metadata.error is not None:
    raise ValueError(
      f'topic {topic}: {metadata.error.str()} (create it with `shopstream kafka create-topic`)'
    )
  return sorted(metadata.partitions)


def group_consumer(bootstrap: str, group: str, **settings):
  """A consumer of the group that commits only when told (librdkafka ``settings`` added)."""
  from confluent_kafka import Consumer

  return Consumer(
    {**client_config(bootstrap), 'group.id': group, 'enable.auto.commit': False, **settings}
  )


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
  """The offset after each partition's last record."""
  from confluent_kafka import TopicPartition

  consumer = group_consumer(bootstrap, 'shopstream-end-offsets')
  try:
    return {
      p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_TIMEOUT_S)[1]
      for p in topic_partitions(bootstrap, topic)
    }
  finally:
    consumer.close()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
  """Creates the topic (one replica per partition on a one-broker cluster, else three)."""
  from confluent_kafka import KafkaException
  from confluent_kafka.admin import AdminClient, NewTopic

  if partitions < 1:
    raise ValueError('--partitions must be at least 1')
  errors = _Errors()
  admin = AdminClient({**client_config(bootstrap), 'error_cb': errors})
  brokers = len(cluster_metadata(admin, bootstrap, errors).brokers)
  topic = NewTopic(name, num_partitions=partitions, replication_factor=min(3, brokers))
  try:
    admin.create_topics([topic], request_timeout=_TIMEOUT_S)[name].result(timeout=_TIMEOUT_S)
  except KafkaException as e:
    raise ValueError(f'topic {name}: {e.args[0].str()}') from None


def put_events(bootstrap: str, topic: str, events: Iterable[Event]) -> int:
  """Produces every event (idempotent producer, all replicas acknowledge); returns how many
  the cluster acknowledged. Raises if any was not: a replay loses nothing silently."""
  from confluent_kafka import Producer

  failures: list[str] = []

  def delivered(error, _message) -> None:
    if error is not None:
      failures.append(str(error))

  errors = _Errors()
  producer = Producer(
    {
      **client_config(bootstrap),
      'error_cb': errors,
      'enable.idempotence': True,
      'acks': 'all',
      'linger.ms': 20,
      'compression.type': 'zstd',
    }
  )
  metadata = cluster_metadata(producer, bootstrap, errors, topic).topics[topic]
  if metadata.error is not None:
    raise ValueError(
      f'topic {topic}: {metadata.error.str()} (create it with `shopstream kafka create-topic`)'
    )
  sent = 0
  for event in events:
    while True:
      try:
        producer.produce(
          topic, value=canonical_json(event), key=event.session_key.encode(), on_delivery=delivered
        )
        break
      except BufferError:  # the local queue is full: let deliveries drain it
        producer.poll(0.5)
    sent += 1
    producer.poll(0)
  unsent = producer.flush(_TIMEOUT_S)
  if failures or unsent:
    raise RuntimeError(
      f'topic {topic}: {len(failures) + unsent:,} of {sent:,} events not acknowledged'
      + (f' ({failures[0]})' if failures else ' in time')
    )
  return sent
