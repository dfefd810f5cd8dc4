"""Kafka topics for shopstream: creating one, and putting canonical JSON events into it.

``shopstream kafka create-topic`` and ``shopstream kafka put`` (the Kafka twins
of the Kinesis commands). Events are keyed by session key, so a key's events
share a partition and keep their order; event_replay.py makes the events.
The client is confluent-kafka (librdkafka).
"""

from __future__ import annotations

from collections.abc import Iterable

from beam_pipelines.io.event_replay import canonical_json
from transforms.records import Event

DEFAULT_BOOTSTRAP = 'localhost:9092'
# How long a command waits for the cluster before it says it cannot reach it.
_TIMEOUT_S = 30


def client_config(bootstrap: str) -> dict:
  return {'bootstrap.servers': bootstrap}


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
  """Creates the topic (one replica per partition on a one-broker cluster, else three)."""
  from confluent_kafka import KafkaException
  from confluent_kafka.admin import AdminClient, NewTopic

  if partitions < 1:
    raise ValueError('--partitions must be at least 1')
  admin = AdminClient(client_config(bootstrap))
  try:
    brokers = len(admin.list_topics(timeout=_TIMEOUT_S).brokers)
  except KafkaException as e:
    raise ValueError(f'no Kafka cluster answered at {bootstrap}: {e}') from None
  topic = NewTopic(name, num_partitions=partitions, replication_factor=min(3, brokers))
  try:
    admin.create_topics([topic], request_timeout=_TIMEOUT_S)[name].result(timeout=_TIMEOUT_S)
  except KafkaException as e:
    raise ValueError(f'topic {name}: {e.args[0].str()}') from None


def put_events(bootstrap: str, topic: str, events: Iterable[Event]) -> int:
  """Produces every event (idempotent producer, all replicas acknowledge); returns how many
  the cluster acknowledged. Raises if any was not: a replay loses nothing silently."""
  from confluent_kafka import KafkaException, Producer

  failures: list[str] = []

  def delivered(error, _message) -> None:
    if error is not None:
      failures.append(str(error))

  producer = Producer(
    {
      **client_config(bootstrap),
      'enable.idempotence': True,
      'acks': 'all',
      'linger.ms': 20,
      'compression.type': 'zstd',
    }
  )
  try:
    metadata = producer.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
  except KafkaException as e:
    raise ValueError(f'no Kafka cluster answered at {bootstrap}: {e}') from None
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
