"""ReadFromKafka: a native Python Kafka source (a splittable DoFn on confluent-kafka).

Built so far: the bounded read that local and test runs use. A read with a
stop condition (``stop_after_idle_s`` or ``max_records``) is one unit of work
over every partition of the topic, partitions that appear while it runs
included; its restriction is its checkpoint, the next offset to read per
partition. It runs in one call until the condition holds and then puts the
watermark at the end of time: the FnApiRunner hands each call's output on as
a round of its own, and event-time timers downstream would fire between
rounds (measured with the Kinesis reader, which reads the same way).

Not built yet: the unbounded read (a unit per partition, the
watermark while running, deferral for checkpoints, committing the consumer
group's offsets once the output is durable) and TLS/SASL settings;
ReadFromKafka refuses a config without a stop condition.

Element timestamps are event times (``event_time_fn``), never later than the
record's Kafka timestamp (the producer's create time, or the broker's append
time), the clock-skew rule of the Kinesis reader: a record more than a day
ahead of its timestamp is stamped where its partition stands.

    p | ReadFromKafka(KafkaConfig('clicks', bootstrap='127.0.0.1:9092', stop_after_idle_s=2))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Timestamp

from beam_pipelines.io.kafka_topics import DEFAULT_BOOTSTRAP, client_config
from transforms.event_time import MAX_FUTURE_US

EARLIEST, LATEST = 'earliest', 'latest'
POLL_TIMEOUT_S = 0.2
# How often a read looks for partitions added to the topic.
LIST_PARTITIONS_EVERY_S = 1.0


class KafkaRecord(NamedTuple):
  topic: str
  partition: int
  offset: int
  key: Optional[bytes]
  data: bytes
  timestamp_us: int  # the record's Kafka timestamp: its arrival, as far as the reader knows


@dataclass(frozen=True)
class KafkaConfig:
  topic: str
  bootstrap: str = DEFAULT_BOOTSTRAP
  start: str = EARLIEST  # where a partition without a checkpoint is read from
  stop_after_idle_s: Optional[float] = None
  max_records: Optional[int] = None
  batch_size: int = 1000
  event_time_fn: Optional[Callable[[bytes], Optional[int]]] = None  # -> UTC microseconds

  @property
  def bounded(self) -> bool:
    return self.stop_after_idle_s is not None or self.max_records is not None

  def __post_init__(self):
    if self.start not in (EARLIEST, LATEST):
      raise ValueError(f'start {self.start!r} is not {EARLIEST!r} or {LATEST!r}')


@dataclass(frozen=True)
class TopicCheckpoint:
  """Where reading stands: the next offset to read of each partition read from."""

  next_offsets: tuple[tuple[int, int], ...] = ()  # (partition, offset), by partition
  records: int = 0
  stopped: bool = False

  def next_offset(self, partition: int) -> Optional[int]:
    return dict(self.next_offsets).get(partition)


_STOP = None  # the claim that ends a read


class OffsetsTracker(RestrictionTracker):
  """Claims are (partition, offset) read, or _STOP; a split at 0 hands the rest on."""

  def __init__(self, checkpoint: TopicCheckpoint):
    self._next = dict(checkpoint.next_offsets)
    self._records = checkpoint.records
    self._stopped = checkpoint.stopped
    self._split_done = False

  def current_restriction(self) -> TopicCheckpoint:
    return TopicCheckpoint(tuple(sorted(self._next.items())), self._records, self._stopped)

  def try_claim(self, claim: Optional[tuple[int, int]]) -> bool:
    if self._stopped or self._split_done:
      return False
    if claim is _STOP:
      self._stopped = True
    else:
      partition, offset = claim
      self._next[partition] = offset + 1
      self._records += 1
    return True

  def try_split(self, fraction_of_remainder):
    if self._stopped or fraction_of_remainder != 0:
      return None
    self._split_done = True
    position = self.current_restriction()
    return TopicCheckpoint(position.next_offsets, position.records, stopped=True), position

  def check_done(self):
    if not (self._stopped or self._split_done):
      raise ValueError('topic reading stopped without a stop claim or a checkpoint')

  def current_progress(self) -> RestrictionProgress:
    return RestrictionProgress(completed=self._records, remaining=0 if self._stopped else 1)

  def is_bounded(self):
    return False


class _OffsetsProvider(RestrictionProvider):
  def initial_restriction(self, element):
    return TopicCheckpoint()

  def create_tracker(self, restriction):
    return OffsetsTracker(restriction)

  def restriction_size(self, element, restriction):
    return 1


_OFFSETS = _OffsetsProvider()
_WATERMARKS = ManualWatermarkEstimator.default_provider()


class ReadKafkaTopic(beam.DoFn):
  """'' (the whole topic) -> KafkaRecords, until the stop condition; see the module docstring."""

  def __init__(self, config: KafkaConfig):
    self._config = config

  def setup(self):
    from confluent_kafka import Consumer

    config = self._config
    # Partitions are assigned, not subscribed: the group only names the reader.
    self._consumer = Consumer(
      {
        **client_config(config.bootstrap),
        'group.id': f'shopstream-{config.topic}',
        'enable.auto.commit': False,
        'auto.offset.reset': config.start,
        'enable.partition.eof': True,
      }
    )

  def teardown(self):
    self._consumer.close()

  @beam.DoFn.unbounded_per_element()
  def process(
    self,
    unit: str,
    tracker=beam.DoFn.RestrictionParam(_OFFSETS),
    watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
  ):
    from confluent_kafka import KafkaError, KafkaException

    config = self._config
    newest_us: dict[int, int] = {}  # per partition, for records whose clock is wrong
    assigned: set[int] = set()
    last_record_at = listed_at = 0.0
    # A call starts from its restriction's offsets, not from where an earlier call's
    # assignment (the consumer outlives calls) left off.
    self._consumer.unassign()
    while True:
      now = time.monotonic()
      if now - listed_at >= LIST_PARTITIONS_EVERY_S:
        self._assign_new(assigned, tracker.current_restriction())
        listed_at = now
        last_record_at = last_record_at or now
      for message in self._consumer.consume(config.batch_size, POLL_TIMEOUT_S):
        error = message.error()
        if error is not None:
          if error.code() == KafkaError._PARTITION_EOF:
            continue
          raise KafkaException(error)
        if config.max_records is not None and tracker.current_restriction().records >= (
          config.max_records
        ):
          break
        if not tracker.try_claim((message.partition(), message.offset())):
          return
        last_record_at = time.monotonic()
        yield self._timestamped(message, newest_us)
      records = tracker.current_restriction().records
      if (config.max_records is not None and records >= config.max_records) or (
        config.stop_after_idle_s is not None
        and time.monotonic() - last_record_at >= config.stop_after_idle_s
      ):
        watermark.set_watermark(MAX_TIMESTAMP)
        tracker.try_claim(_STOP)
        return

  def _assign_new(self, assigned: set[int], checkpoint: TopicCheckpoint) -> None:
    """Assigns the topic's partitions not read yet, from their checkpoint or the start."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

    topic = self._config.topic
    metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
    if metadata.error is not None:
      raise ValueError(f'kafka topic {topic}: {metadata.error.str()}')
    start = OFFSET_BEGINNING if self._config.start == EARLIEST else OFFSET_END
    new = sorted(set(metadata.partitions) - assigned)
    if new:
      self._consumer.incremental_assign(
        [TopicPartition(topic, p, checkpoint.next_offset(p) or start) for p in new]
      )
      assigned.update(new)

  def _timestamped(self, message, newest_us: dict[int, int]) -> TimestampedValue:
    config = self._config
    _, timestamp_ms = message.timestamp()
    arrival_us = timestamp_ms * 1000
    data = message.value() or b''
    event_us = (config.event_time_fn(data) if config.event_time_fn else None) or arrival_us
    partition = message.partition()
    if event_us <= arrival_us + MAX_FUTURE_US:
      newest_us[partition] = max(newest_us.get(partition, event_us), min(event_us, arrival_us))
    else:
      event_us = newest_us.get(partition, arrival_us)  # a clock gone wrong moves nothing
    return TimestampedValue(
      KafkaRecord(config.topic, partition, message.offset(), message.key(), data, arrival_us),
      Timestamp(micros=max(event_us, MIN_TIMESTAMP.micros + 1)),
    )


class ReadFromKafka(beam.PTransform):
  """A Kafka topic's KafkaRecords; a bounded read only, so far (see the module docstring)."""

  def __init__(self, config: KafkaConfig):
    super().__init__()
    if not config.bounded:
      raise ValueError(
        'reading Kafka until stopped is not supported yet: give --stop-after-idle or --max-records'
      )
    self._config = config

  def expand(self, pbegin):
    return (
      pbegin
      | 'Unit' >> beam.Impulse()
      | 'WholeTopic' >> beam.FlatMap(lambda _: ['']).with_output_types(str)
      | 'Read' >> beam.ParDo(ReadKafkaTopic(self._config)).with_output_types(KafkaRecord)
    )
