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
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.testing.util import assert_that, equal_to
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from beam_pipelines import cli
from beam_pipelines.dev.kafka_broker import running_broker, start_broker
from beam_pipelines.dev.local_services import free_port, stop
from beam_pipelines.io.event_replay import canonical_json, events_in_time_order
from beam_pipelines.io.kafka import (
  OFFSETS_TAG,
  WHOLE_TOPIC,
  KafkaConfig,
  OffsetsMark,
  OffsetsTracker,
  ReadFromKafka,
  ReadKafkaTopic,
  Slice,
  TopicCheckpoint,
)
from beam_pipelines.io.kafka_offsets import _Commit, committed_offsets, newest_offsets
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


NO_CHECKPOINT = TopicCheckpoint()


def call(read: ReadKafkaTopic, unit, checkpoint: TopicCheckpoint, estimator):
  """One call of the reader on a unit, as a runner makes it: (records, residual or None)."""
  tracker = ThreadsafeRestrictionTracker(OffsetsTracker(checkpoint))
  view = RestrictionTrackerView(tracker)
  got = [o.value for o in read.process(unit, tracker=view, watermark=estimator)]
  deferred = tracker.deferred_status()
  return got, deferred[0] if deferred else None


def read_slice(read: ReadKafkaTopic, unit: Slice, want: int, checkpoint=NO_CHECKPOINT):
  """Calls on one slice, each from the last one's residual, until ``want`` records are read."""
  estimator, records = ManualWatermarkEstimator(None), []
  for _ in range(50):
    got, checkpoint = call(read, unit, checkpoint, estimator)
    assert checkpoint is not None  # an unbounded read always defers
    records.extend(got)
    if len(records) >= want:
      return records, checkpoint, estimator
  raise AssertionError(f'{len(records)} of {want} records read')


def test_an_unbounded_read_has_a_unit_per_partition_and_new_partitions_join_one(kafka_bootstrap):
  at = ['--kafka-bootstrap', kafka_bootstrap]
  assert cli.main(['kafka', 'create-topic', 'sliced', '--partitions', '2', *at]) == 0
  produce(kafka_bootstrap, 'sliced', [b'a%d' % n for n in range(40)], 2)
  config = KafkaConfig('sliced', bootstrap=kafka_bootstrap, defer_every_s=0.5)
  read = ReadKafkaTopic(config)
  read.setup()
  try:
    slices = [Slice(0, 2), Slice(1, 2)]
    checkpoints = {}
    for unit in slices:
      records, checkpoints[unit], _ = read_slice(read, unit, 20)
      assert {r.partition for r in records} == {unit.index}
      assert [r.offset for r in records] == list(range(20))
    admin = AdminClient({'bootstrap.servers': kafka_bootstrap})
    admin.create_partitions([NewPartitions('sliced', 3)])['sliced'].result(30)
    wait_for(lambda: len(admin.list_topics('sliced').topics['sliced'].partitions) == 3)
    produce_to(kafka_bootstrap, 'sliced', [(b'b%d' % n, n % 3) for n in range(30)])
    got = {
      unit: read_slice(read, unit, 20 if unit.index == 0 else 10, checkpoints[unit])[0]
      for unit in slices
    }
  finally:
    read.teardown()
  # Partition 2 is 2 % 2 == 0's: it is read by the first unit, from its start.
  assert sorted((r.partition, r.offset) for r in got[slices[0]]) == [
    (p, o)
    for p in (0, 2)
    for o in ((20, 21, 22, 23, 24, 25, 26, 27, 28, 29) if p == 0 else range(10))
  ]
  assert sorted((r.partition, r.offset) for r in got[slices[1]]) == [(1, o) for o in range(20, 30)]


def test_the_units_are_listed_from_the_topic_and_a_bounded_read_is_one():
  assert ReadFromKafka._units(KafkaConfig('t', max_records=1), lambda: [0, 1, 2]) == [WHOLE_TOPIC]
  assert ReadFromKafka._units(KafkaConfig('t'), lambda: [0, 1, 2]) == [
    Slice(0, 3),
    Slice(1, 3),
    Slice(2, 3),
  ]


def test_an_unbounded_call_reads_until_it_is_time_to_defer_then_hands_on_its_offsets(
  kafka_bootstrap,
):
  assert cli.main(['kafka', 'create-topic', 'deferred', '--kafka-bootstrap', kafka_bootstrap]) == 0
  produce(kafka_bootstrap, 'deferred', [b'%d' % n for n in range(30)], 1)
  read = ReadKafkaTopic(
    KafkaConfig('deferred', bootstrap=kafka_bootstrap, batch_size=10, defer_every_s=1.0)
  )
  read.setup()
  try:
    started = time.monotonic()
    got, residual = call(read, Slice(0, 1), TopicCheckpoint(), ManualWatermarkEstimator(None))
    elapsed = time.monotonic() - started
    again, _ = call(read, Slice(0, 1), residual, ManualWatermarkEstimator(None))
  finally:
    read.teardown()
  assert [r.offset for r in got] == list(range(30))  # three batches of 10 in one call
  assert elapsed >= 1.0
  assert residual.next_offsets == ((0, 30),) and not residual.stopped
  assert again == []  # the residual goes on after the last record read


def test_a_call_hands_on_its_offsets_mark_timed_the_hold_after_its_newest_record(
  kafka_bootstrap,
):
  assert cli.main(['kafka', 'create-topic', 'marked', '--kafka-bootstrap', kafka_bootstrap]) == 0
  times_us = [NOW_US - 50_000_000, NOW_US - 10_000_000, NOW_US - 30_000_000]
  produce(kafka_bootstrap, 'marked', [b'%d' % t for t in times_us], 1)
  config = KafkaConfig(
    'marked',
    bootstrap=kafka_bootstrap,
    defer_every_s=0.5,
    event_time_fn=lambda data: int(data),
    commit_hold_s=100.0,
  )
  read = ReadKafkaTopic(config)
  read.setup()
  try:
    tracker = ThreadsafeRestrictionTracker(OffsetsTracker(NO_CHECKPOINT))
    view = RestrictionTrackerView(tracker)
    outputs = list(
      read.process(Slice(0, 1), tracker=view, watermark=ManualWatermarkEstimator(None))
    )
  finally:
    read.teardown()
  marks = [o.value for o in outputs if isinstance(o, TaggedOutput)]
  assert [m.tag for m in outputs if isinstance(m, TaggedOutput)] == [OFFSETS_TAG]
  assert len(outputs) == 4 and marks[0].value == OffsetsMark('marked', ((0, 3),))
  assert marks[0].timestamp.micros == NOW_US - 10_000_000 + 100_000_000
  assert tracker.deferred_status()[0].newest_us == NOW_US - 10_000_000


def test_offsets_committed_are_the_furthest_of_each_partition_and_never_move_back(
  kafka_bootstrap,
):
  at = ['--kafka-bootstrap', kafka_bootstrap]
  assert cli.main(['kafka', 'create-topic', 'commits', '--partitions', '3', *at]) == 0
  marks = [OffsetsMark('commits', ((0, 5), (1, 2))), OffsetsMark('commits', ((0, 3), (2, 9)))]
  assert newest_offsets(marks) == {0: 5, 1: 2, 2: 9}
  commit = _Commit(KafkaConfig('commits', bootstrap=kafka_bootstrap))
  commit.setup()
  try:
    assert list(commit.process(('commits', marks))) == [('commits', ((0, 5), (1, 2), (2, 9)))]
    behind = [OffsetsMark('commits', ((0, 4), (1, 7)))]  # a window that fired late
    assert list(commit.process(('commits', behind))) == [('commits', ((1, 7),))]
  finally:
    commit.teardown()
  assert committed_offsets(kafka_bootstrap, 'commits', 'shopstream-commits') == {0: 5, 1: 7, 2: 9}


def test_a_read_from_latest_keeps_what_arrives_between_its_calls(kafka_bootstrap):
  """'latest' is where the topic ends when the unit first looks, not at each call."""
  assert cli.main(['kafka', 'create-topic', 'newest', '--kafka-bootstrap', kafka_bootstrap]) == 0
  produce(kafka_bootstrap, 'newest', [b'old%d' % n for n in range(5)], 1)
  read = ReadKafkaTopic(
    KafkaConfig('newest', bootstrap=kafka_bootstrap, start='latest', defer_every_s=0.5)
  )
  read.setup()
  try:
    first, residual = call(read, Slice(0, 1), NO_CHECKPOINT, ManualWatermarkEstimator(None))
    produce(kafka_bootstrap, 'newest', [b'new%d' % n for n in range(5)], 1)
    records, _, _ = read_slice(read, Slice(0, 1), 5, residual)
  finally:
    read.teardown()
  assert first == [] and residual.next_offsets == ((0, 5),) and residual.records == 0
  assert [r.data for r in records] == [b'new%d' % n for n in range(5)]


def test_an_unbounded_reads_watermark_follows_its_partitions_event_times(kafka_bootstrap):
  """A replay of history: the watermark stands at the newest event less the bound, the
  idle partition holding nothing back, and never passes a record not yet read."""
  assert (
    cli.main(
      [
        'kafka',
        'create-topic',
        'timed',
        '--partitions',
        '2',
        '--kafka-bootstrap',
        kafka_bootstrap,
      ]
    )
    == 0
  )
  year_ago_us = NOW_US - 365 * 86_400 * 1_000_000
  values = [b'%d' % (year_ago_us + n * 1_000_000) for n in range(10)]
  produce_to(kafka_bootstrap, 'timed', [(v, 0) for v in values])
  config = KafkaConfig(
    'timed',
    bootstrap=kafka_bootstrap,
    event_time_fn=lambda data: int(data),
    max_out_of_order_s=2.0,
    idle_timeout_s=0.2,
    defer_every_s=0.5,
  )
  read = ReadKafkaTopic(config)
  read.setup()
  try:
    records, checkpoint, estimator = read_slice(read, Slice(0, 1), 10)
    _, checkpoint = call(read, Slice(0, 1), checkpoint, estimator)  # both partitions idle now
  finally:
    read.teardown()
  assert estimator.current_watermark().micros == year_ago_us + 9_000_000 - 2_000_000
  assert [r.data for r in records] == values


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
  arrival_ms = 1_772_362_800_000
  stamp = [
    read._timestamped(_Message(0, n, arrival_ms, str(event_us).encode())).timestamp
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
    wait_for(lambda: len(read) == 200 or errors)
    assert not errors, errors
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
    offsets = [
      r.value.offset for r in read.process(WHOLE_TOPIC, first, ManualWatermarkEstimator(None))
    ]
    assert offsets == list(range(20))
    # The residual of a checkpoint taken after 10 records: offsets 10.. are read again.
    residual = OffsetsTracker(TopicCheckpoint(next_offsets=((0, 10),), records=10))
    offsets = [
      r.value.offset for r in read.process(WHOLE_TOPIC, residual, ManualWatermarkEstimator(None))
    ]
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
