"""Kafka on a real broker: topics, replaying exports into them, the dev broker, the reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import apache_beam as beam
import orjson
import pytest
from apache_beam.internal import pickler
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.testing.util import assert_that, equal_to
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from beam_pipelines import cli
from beam_pipelines.dev.kafka_broker import running_broker, start_broker
from beam_pipelines.dev.local_services import free_port, stop
from beam_pipelines.io.event_replay import canonical_json, events_in_time_order
from beam_pipelines.io.kafka import (
  KafkaConfig,
  OffsetsTracker,
  ReadFromKafka,
  ReadKafkaTopic,
  TopicCheckpoint,
)
from tests.conftest import NOW_US, beam_pipeline, fixture_path

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


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
  """Each value to partition n % partitions; fails unless every one was acknowledged."""
  produce_to(bootstrap, topic, [(value, n % partitions) for n, value in enumerate(values)])


def produce_to(bootstrap: str, topic: str, values: list[tuple[bytes, int]]) -> None:
  errors = []
  producer = Producer({'bootstrap.servers': bootstrap})
  for value, partition in values:
    producer.produce(
      topic, value=value, partition=partition, on_delivery=lambda e, _: e and errors.append(e)
    )
  assert producer.flush(30) == 0 and not errors, errors


def test_a_bounded_read_gets_every_record_of_every_partition_once(kafka_bootstrap):
  assert (
    cli.main(
      ['kafka', 'create-topic', 'read', '--partitions', '3', '--kafka-bootstrap', kafka_bootstrap]
    )
    == 0
  )
  values = [b'{"n":%d}' % n for n in range(300)]
  produce(kafka_bootstrap, 'read', values, 3)
  config = KafkaConfig('read', bootstrap=kafka_bootstrap, stop_after_idle_s=1.0)
  with beam_pipeline() as p:
    records = p | ReadFromKafka(config)
    assert_that(records | beam.Map(lambda r: r.data), equal_to(values), label='values')
    assert_that(
      records | beam.Map(lambda r: (r.partition, r.offset)),
      equal_to([(n % 3, n // 3) for n in range(300)]),
      label='offsets',
    )


def test_max_records_stops_the_read(kafka_bootstrap):
  assert cli.main(['kafka', 'create-topic', 'capped', '--kafka-bootstrap', kafka_bootstrap]) == 0
  produce(kafka_bootstrap, 'capped', [b'%d' % n for n in range(50)], 1)
  config = KafkaConfig('capped', bootstrap=kafka_bootstrap, max_records=20)
  with beam_pipeline() as p:
    read = p | ReadFromKafka(config) | beam.Map(lambda r: r.data)
    assert_that(read, equal_to([b'%d' % n for n in range(20)]))  # in offset order: the first


def test_an_unbounded_read_is_refused_until_it_is_built():
  with pytest.raises(ValueError, match='--stop-after-idle or --max-records'):
    ReadFromKafka(KafkaConfig('t'))


class _Message:
  def __init__(self, partition: int, offset: int, timestamp_ms: int, value: bytes):
    self._fields = (partition, offset, timestamp_ms, value)

  def partition(self):
    return self._fields[0]

  def offset(self):
    return self._fields[1]

  def timestamp(self):
    return (1, self._fields[2])

  def value(self):
    return self._fields[3]

  def key(self):
    return None


def test_event_times_never_pass_the_records_timestamp_and_bad_clocks_move_nothing():
  read = ReadKafkaTopic(KafkaConfig('t', max_records=1, event_time_fn=lambda d: int(d)))
  newest: dict[int, int] = {}
  arrival_ms = 1_772_362_800_000
  stamp = [
    read._timestamped(_Message(0, n, arrival_ms, str(event_us).encode()), newest).timestamp
    for n, event_us in enumerate(
      [
        arrival_ms * 1000 - 5_000_000,  # 5 s before arrival: its own time
        arrival_ms * 1000 + 3_600_000_000,  # an hour ahead: its own time (not a bad clock)
        arrival_ms * 1000 + 90_000_000_000,  # 25 h ahead: where the partition stands
      ]
    )
  ]
  assert stamp[0].micros == arrival_ms * 1000 - 5_000_000
  assert stamp[1].micros == arrival_ms * 1000 + 3_600_000_000
  assert stamp[2].micros == arrival_ms * 1000  # the newest progress, capped at arrival


# What background reads got, by read: a module's function and global, which pickling
# refers to by name, so the runner's copy of the step appends here.
_COLLECTED: dict[str, list] = {}


def _collect(record, read_id: str) -> None:
  _COLLECTED[read_id].append((record.partition, record.offset, record.data))


def read_in_background(config: KafkaConfig) -> tuple[threading.Thread, list, list]:
  """Runs a bounded read in a thread; returns it, the (partition, offset, data) it read, errors."""
  read_id = f'{config.topic}-{time.monotonic_ns()}'
  read = _COLLECTED.setdefault(read_id, [])
  errors = []

  def run():
    try:
      with beam_pipeline() as p:
        _ = p | ReadFromKafka(config) | beam.Map(_collect, read_id)
    except Exception as e:  # noqa: BLE001 - reported by the test
      errors.append(e)

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  return thread, read, errors


def wait_for(condition, timeout_s: float = 60) -> None:
  deadline = time.monotonic() + timeout_s
  while not condition():
    assert time.monotonic() < deadline, 'timed out'
    time.sleep(0.1)


def test_a_partition_added_while_reading_is_read(kafka_bootstrap):
  at = ['--kafka-bootstrap', kafka_bootstrap]
  assert cli.main(['kafka', 'create-topic', 'grows', *at]) == 0
  produce(kafka_bootstrap, 'grows', [b'a%d' % n for n in range(100)], 1)
  thread, read, errors = read_in_background(
    # Idle longer than adding the partition and producing to it takes.
    KafkaConfig('grows', bootstrap=kafka_bootstrap, stop_after_idle_s=10.0)
  )
  wait_for(lambda: len(read) == 100)
  admin = AdminClient({'bootstrap.servers': kafka_bootstrap})
  admin.create_partitions([NewPartitions('grows', 2)])['grows'].result(30)
  # A producer that does not know the partition yet would fail to deliver to it.
  wait_for(lambda: len(admin.list_topics('grows').topics['grows'].partitions) == 2)
  produce_to(kafka_bootstrap, 'grows', [(b'b%d' % n, 1) for n in range(50)])
  thread.join(60)
  assert not errors and not thread.is_alive()
  assert sorted(read) == sorted(
    [(0, n, b'a%d' % n) for n in range(100)] + [(1, n, b'b%d' % n) for n in range(50)]
  )


def test_a_broker_restart_while_reading_loses_and_doubles_nothing(tmp_path):
  port, controller = free_port(), free_port()
  broker = start_broker(port, controller, str(tmp_path))
  bootstrap = f'127.0.0.1:{port}'
  try:
    assert (
      cli.main(
        ['kafka', 'create-topic', 'steady', '--partitions', '2', '--kafka-bootstrap', bootstrap]
      )
      == 0
    )
    produce(bootstrap, 'steady', [b'before%d' % n for n in range(200)], 2)
    # Longer than the restart: the read must not stop for lack of records meanwhile.
    thread, read, errors = read_in_background(
      KafkaConfig('steady', bootstrap=bootstrap, stop_after_idle_s=15.0)
    )
    wait_for(lambda: len(read) == 200)
    stop(broker)
    broker = start_broker(port, controller, str(tmp_path))
    produce(bootstrap, 'steady', [b'after%d' % n for n in range(100)], 2)
    thread.join(90)
    assert not errors and not thread.is_alive()
    values = sorted(data for _, _, data in read)
    assert values == sorted(
      [b'before%d' % n for n in range(200)] + [b'after%d' % n for n in range(100)]
    )
  finally:
    stop(broker)


def test_a_call_resumes_at_its_checkpoint_whatever_the_last_call_read(kafka_bootstrap):
  """A runner resumes a residual on the same DoFn instance (its consumer outlives calls)."""
  assert cli.main(['kafka', 'create-topic', 'resume', '--kafka-bootstrap', kafka_bootstrap]) == 0
  produce(kafka_bootstrap, 'resume', [b'%d' % n for n in range(40)], 1)
  read = ReadKafkaTopic(KafkaConfig('resume', bootstrap=kafka_bootstrap, max_records=20))
  read.setup()
  try:
    first = OffsetsTracker(TopicCheckpoint())
    offsets = [r.value.offset for r in read.process('', first, ManualWatermarkEstimator(None))]
    assert offsets == list(range(20))
    # The residual of a checkpoint taken after 10 records: offsets 10.. are read again.
    residual = OffsetsTracker(TopicCheckpoint(next_offsets=((0, 10),), records=10))
    offsets = [r.value.offset for r in read.process('', residual, ManualWatermarkEstimator(None))]
    assert offsets == list(range(10, 20))
  finally:
    read.teardown()


SASL_USER = ('shopstream', 'scram-secret')


@pytest.fixture(scope='module')
def sasl_bootstrap():
  """A broker whose client listener takes SCRAM-SHA-256 logins of SASL_USER only."""
  with running_broker(sasl_user=SASL_USER) as bootstrap:
    yield bootstrap


def use_sasl(monkeypatch, password: str = SASL_USER[1]) -> None:
  monkeypatch.setenv('SHOPSTREAM_KAFKA_SECURITY_PROTOCOL', 'SASL_PLAINTEXT')
  monkeypatch.setenv('SHOPSTREAM_KAFKA_SASL_MECHANISM', 'SCRAM-SHA-256')
  monkeypatch.setenv('SHOPSTREAM_KAFKA_USERNAME', SASL_USER[0])
  monkeypatch.setenv('SHOPSTREAM_KAFKA_PASSWORD', password)


def test_with_sasl_credentials_from_the_environment_topics_and_reads_work(
  sasl_bootstrap, monkeypatch, capsys
):
  use_sasl(monkeypatch)
  at = ['--kafka-bootstrap', sasl_bootstrap]
  assert cli.main(['kafka', 'create-topic', 'secure', '--partitions', '2', *at]) == 0
  put = ['kafka', 'put', 'secure'] + [arg for s in SOURCES for arg in ('--source', s)]
  assert cli.main(put + at) == 0
  assert '12 events put' in capsys.readouterr().out
  config = KafkaConfig('secure', bootstrap=sasl_bootstrap, max_records=12)
  # Workers read the credentials from their environment: none is in the job graph.
  assert b'scram-secret' not in pickler.dumps(ReadFromKafka(config))
  with beam_pipeline() as p:
    count = p | ReadFromKafka(config) | beam.Map(lambda r: 1)
    assert_that(count, equal_to([1] * 12))


def test_wrong_or_missing_sasl_credentials_are_clear_errors(sasl_bootstrap, monkeypatch, capsys):
  at = ['--kafka-bootstrap', sasl_bootstrap]
  use_sasl(monkeypatch, password='not-it')
  assert cli.main(['kafka', 'create-topic', 'refused', *at]) == cli.EXIT_BAD_ARGUMENTS
  assert 'refused the credentials of SHOPSTREAM_KAFKA_USERNAME' in capsys.readouterr().err
  monkeypatch.delenv('SHOPSTREAM_KAFKA_PASSWORD')
  assert cli.main(['kafka', 'create-topic', 'refused', *at]) == cli.EXIT_BAD_ARGUMENTS
  assert 'needs SHOPSTREAM_KAFKA_PASSWORD set' in capsys.readouterr().err
  monkeypatch.delenv('SHOPSTREAM_KAFKA_SECURITY_PROTOCOL')  # plaintext to a SASL listener
  assert cli.main(['kafka', 'create-topic', 'refused', *at]) == cli.EXIT_BAD_ARGUMENTS
  assert 'no Kafka cluster answered' in capsys.readouterr().err
