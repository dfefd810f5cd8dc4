"""Kafka topics on a real broker: creating them, replaying exports into them, the dev broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict

import orjson
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from beam_pipelines import cli
from beam_pipelines.dev.local_services import free_port
from beam_pipelines.io.event_replay import canonical_json, events_in_time_order
from tests.conftest import NOW_US, fixture_path

SOURCES = [
  f'events-jsonl={fixture_path("events.jsonl")}',
  f'access-log={fixture_path("access.log")}',
]


def read_all(bootstrap: str, topic: str) -> dict[int, list]:
  """Every message of the topic, by partition, in offset order."""
  partitions = AdminClient({'bootstrap.servers': bootstrap}).list_topics(topic).topics[topic]
  consumer = Consumer(
    {'bootstrap.servers': bootstrap, 'group.id': 'test-read-all', 'enable.auto.commit': False}
  )
  by_partition = defaultdict(list)
  for partition in partitions.partitions:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    consumer.assign([TopicPartition(topic, partition, low)])
    while len(by_partition[partition]) < high - low:
      message = consumer.poll(10)
      assert message is not None and message.error() is None, message
      by_partition[partition].append(message)
  consumer.close()
  return by_partition


def test_create_topic_makes_its_partitions_and_refuses_a_second(kafka_bootstrap, capsys):
  args = ['kafka', 'create-topic', 'created', '--partitions', '3']
  assert cli.main(args + ['--kafka-bootstrap', kafka_bootstrap]) == 0
  assert 'topic created: 3 partition(s)' in capsys.readouterr().out
  topics = AdminClient({'bootstrap.servers': kafka_bootstrap}).list_topics('created').topics
  assert len(topics['created'].partitions) == 3
  assert cli.main(args + ['--kafka-bootstrap', kafka_bootstrap]) == cli.EXIT_BAD_ARGUMENTS
  assert 'already exists' in capsys.readouterr().err


def test_put_sends_the_batch_events_keyed_by_session(kafka_bootstrap, pseudonymizer, capsys):
  bootstrap = ['--kafka-bootstrap', kafka_bootstrap]
  assert cli.main(['kafka', 'create-topic', 'replay', '--partitions', '3'] + bootstrap) == 0
  put = ['kafka', 'put', 'replay'] + [arg for s in SOURCES for arg in ('--source', s)]
  assert cli.main(put + bootstrap) == 0
  assert '12 events put; not sent: 6 filtered, 8 unusable' in capsys.readouterr().out
  expected = events_in_time_order(SOURCES, pseudonymizer, NOW_US, Counter())
  messages = read_all(kafka_bootstrap, 'replay')
  values = sorted(m.value() for ms in messages.values() for m in ms)
  assert values == sorted(canonical_json(e) for e in expected)
  partition_of = {}
  for partition, ms in messages.items():
    for m in ms:
      event = orjson.loads(m.value())
      assert m.key().decode() == (event.get('anonymous_id') or event.get('user_id'))
      assert partition_of.setdefault(m.key(), partition) == partition  # a key, one partition
    times = [orjson.loads(m.value())['event_time'] for m in ms]
    assert times == sorted(times)  # produced in event-time order


def test_put_to_a_missing_topic_says_so(kafka_bootstrap, capsys):
  put = ['kafka', 'put', 'no-such-topic', '--source', SOURCES[0]]
  assert cli.main(put + ['--kafka-bootstrap', kafka_bootstrap]) == cli.EXIT_BAD_ARGUMENTS
  assert 'create it with `shopstream kafka create-topic`' in capsys.readouterr().err


def serve_dev_broker(port: int, data_dir) -> subprocess.Popen:
  """`shopstream dev kafka`, once it says where it listens."""
  process = subprocess.Popen(
    [
      os.path.join(os.path.dirname(sys.executable), 'shopstream'),
      'dev',
      'kafka',
      '--port',
      str(port),
      '--data-dir',
      str(data_dir),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  first = process.stdout.readline()
  assert f'at 127.0.0.1:{port}' in first, first
  return process


def test_dev_kafka_serves_until_sigterm_and_keeps_its_topics(tmp_path):
  port = free_port()
  bootstrap = ['--kafka-bootstrap', f'127.0.0.1:{port}']
  process = serve_dev_broker(port, tmp_path)
  try:
    assert cli.main(['kafka', 'create-topic', 'kept', '--partitions', '2'] + bootstrap) == 0
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    process = serve_dev_broker(port, tmp_path)  # again, on the same data
    topics = AdminClient({'bootstrap.servers': f'127.0.0.1:{port}'}).list_topics().topics
    assert len(topics['kept'].partitions) == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
  finally:
    if process.poll() is None:
      process.kill()
