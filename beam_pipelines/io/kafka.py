"""ReadFromKafka: a native Python Kafka source (a splittable DoFn on confluent-kafka).

Units of work: a continuous read has one Slice per partition listed at start
(partitions p with p % count == index), spread over the workers by a
Reshuffle; a partition added while it runs belongs to the slice its number
falls in, so new partitions are read without new elements. A slice's
restriction is its checkpoint, the next offset to read per partition. The
read polls for ``defer_every_s`` and then defers its remainder, so that a
runner can checkpoint it.

With ``commit_hold_s`` set, each call also emits the unit's OffsetsMark as
it defers or stops, for committing the consumer group's offsets once the
tables hold the records before them (kafka_offsets.py).

A bounded read (``stop_after_idle_s`` or ``max_records``, about the topic as
a whole) is one slice over every partition. It runs in one call until the
condition holds and then puts the watermark at the end of time: the
FnApiRunner hands each call's output on as a round of its own, and
event-time timers downstream would fire between rounds (measured with the
Kinesis reader, which reads the same way).

Element timestamps and the watermark follow stream_watermark.py, the rule of
the Kinesis reader: event times (``event_time_fn``), never later than the
record's Kafka timestamp (the producer's create time, or the broker's append
time); per partition the newest less ``max_out_of_order_s``; a partition at
its end (librdkafka's partition EOF) for ``idle_timeout_s`` holds nothing
back.

    p | ReadFromKafka(KafkaConfig('clicks', bootstrap='127.0.0.1:9092', stop_after_idle_s=2))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Duration, Timestamp

from beam_pipelines.io.kafka_topics import (
  DEFAULT_BOOTSTRAP,
  group_consumer,
  topic_partitions,
  with_retries,
)
from beam_pipelines.io.stream_watermark import SplitProgress, advance, unit_watermark
from transforms.records import typed_outputs

COMMITTED, EARLIEST, LATEST = 'committed', 'earliest', 'latest'
STARTS = (COMMITTED, EARLIEST, LATEST)
OFFSETS_TAG = 'offsets'
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
  # Where a partition without a checkpoint is read from: the group's committed
  # offset (else its earliest), its earliest or its latest.
  start: str = COMMITTED
  group: Optional[str] = None  # the consumer group; None: shopstream-<topic>
  stop_after_idle_s: Optional[float] = None
  max_records: Optional[int] = None
  batch_size: int = 1000
  idle_timeout_s: float = 5.0
  max_out_of_order_s: float = 60.0
  # How long an unbounded read polls in one call before it defers: as for
  # Kinesis (kinesis.py), each deferral's residual costs state on portable Flink.
  defer_every_s: float = 5.0
  event_time_fn: Optional[Callable[[bytes], Optional[int]]] = None  # -> UTC microseconds
  # With a hold, the read also emits OffsetsMarks (OFFSETS_TAG), each timed this
  # long after the newest record it covers; see kafka_offsets.py.
  commit_hold_s: Optional[float] = None

  @property
  def bounded(self) -> bool:
    return self.stop_after_idle_s is not None or self.max_records is not None

  @property
  def group_id(self) -> str:
    return self.group or f'shopstream-{self.topic}'

  def __post_init__(self):
    if self.start not in STARTS:
      raise ValueError(f'start {self.start!r} is not one of {", ".join(STARTS)}')


class OffsetsMark(NamedTuple):
  """Where a unit of work stands: the next offset of each of its partitions, to commit
  once the rows of every record before them are written."""

  topic: str
  next_offsets: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TopicCheckpoint:
  """Where reading stands: the next offset to read of each partition read from."""

  next_offsets: tuple[tuple[int, int], ...] = ()  # (partition, offset), by partition
  records: int = 0
  stopped: bool = False
  newest_us: Optional[int] = None  # the latest element timestamp read, for OffsetsMarks

  def next_offset(self, partition: int) -> Optional[int]:
    return dict(self.next_offsets).get(partition)


_STOP = None  # the claim that ends a read


class _Start(NamedTuple):
  """The claim of where a partition new to the checkpoint is read from."""

  partition: int
  offset: int


class _Read(NamedTuple):
  """The claim of a record, with its element timestamp."""

  partition: int
  offset: int
  time_us: int


class OffsetsTracker(RestrictionTracker):
  """Claims are _Read, _Start or _STOP; a split at 0 hands the rest on."""

  def __init__(self, checkpoint: TopicCheckpoint):
    self._next = dict(checkpoint.next_offsets)
    self._records = checkpoint.records
    self._stopped = checkpoint.stopped
    self._newest_us = checkpoint.newest_us
    self._split_done = False

  def current_restriction(self) -> TopicCheckpoint:
    return TopicCheckpoint(
      tuple(sorted(self._next.items())), self._records, self._stopped, self._newest_us
    )

  def try_claim(self, claim) -> bool:
    if self._stopped or self._split_done:
      return False
    if claim is _STOP:
      self._stopped = True
    elif isinstance(claim, _Start):
      self._next[claim.partition] = claim.offset
    else:
      self._next[claim.partition] = claim.offset + 1
      self._records += 1
      self._newest_us = max(self._newest_us or claim.time_us, claim.time_us)
    return True

  def try_split(self, fraction_of_remainder):
    if self._stopped or fraction_of_remainder != 0:
      return None
    self._split_done = True
    position = self.current_restriction()
    return replace(position, stopped=True), position

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


class Slice(NamedTuple):
  """A unit of work: the partitions p of the topic with p % count == index."""

  index: int
  count: int

  def owns(self, partition: int) -> bool:
    return partition % self.count == self.index


WHOLE_TOPIC = Slice(0, 1)


class ReadKafkaTopic(beam.DoFn):
  """A Slice of the topic -> its KafkaRecords; see the module docstring."""

  def __init__(self, config: KafkaConfig):
    self._config = config
    self._partitions: dict[int, SplitProgress] = {}  # by partition; outlives calls

  def setup(self):
    # Partitions are assigned, not subscribed: the group only names the reader.
    self._consumer = group_consumer(
      self._config.bootstrap,
      self._config.group_id,
      # Offsets are always given; this applies only to one no longer held (the
      # retention deleted its record): the earliest held then, losing no more.
      **{'auto.offset.reset': 'earliest', 'enable.partition.eof': True},
    )

  def teardown(self):
    self._consumer.close()

  @beam.DoFn.unbounded_per_element()
  def process(
    self,
    unit: Slice,
    tracker=beam.DoFn.RestrictionParam(_OFFSETS),
    watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
  ):
    from confluent_kafka import KafkaError, KafkaException

    config = self._config
    unit = Slice(*unit)
    assigned: set[int] = set()
    call_started = time.monotonic()
    last_record_at = listed_at = 0.0
    # A call starts from its restriction's offsets, not from where an earlier call's
    # assignment (the consumer outlives calls) left off.
    self._consumer.unassign()
    while True:
      now = time.monotonic()
      if now - listed_at >= LIST_PARTITIONS_EVERY_S:
        if not self._assign_new(unit, assigned, tracker):
          return
        listed_at = now
        last_record_at = last_record_at or now
      got_any = False
      for message in self._consumer.consume(config.batch_size, POLL_TIMEOUT_S):
        error = message.error()
        if error is not None:
          if error.code() == KafkaError._PARTITION_EOF:
            self._progress(message.partition()).caught_up(time.monotonic())
            continue
          raise KafkaException(error)
        if config.max_records is not None and tracker.current_restriction().records >= (
          config.max_records
        ):
          break
        record = self._timestamped(message)
        if not tracker.try_claim(
          _Read(message.partition(), message.offset(), record.timestamp.micros)
        ):
          return
        got_any = True
        yield record
      now = time.monotonic()
      last_record_at = now if got_any else last_record_at
      records = tracker.current_restriction().records
      if (config.max_records is not None and records >= config.max_records) or (
        config.stop_after_idle_s is not None and now - last_record_at >= config.stop_after_idle_s
      ):
        yield from self._offsets_mark(tracker.current_restriction())
        watermark.set_watermark(MAX_TIMESTAMP)
        tracker.try_claim(_STOP)
        return
      if config.bounded:
        continue  # one call until it stops (see the module docstring)
      progress = [self._progress(p) for p in sorted(assigned)]
      advance(
        watermark,
        unit_watermark(progress, progress, now, config.idle_timeout_s, config.max_out_of_order_s),
      )
      if now - call_started >= config.defer_every_s:
        yield from self._offsets_mark(tracker.current_restriction())
        tracker.defer_remainder(Duration.of(0 if got_any else POLL_TIMEOUT_S))
        return

  def _offsets_mark(self, checkpoint: TopicCheckpoint):
    """The unit's OffsetsMark, if it commits and has read a record."""
    hold_s = self._config.commit_hold_s
    if hold_s is None or checkpoint.newest_us is None:
      return
    mark = OffsetsMark(self._config.topic, checkpoint.next_offsets)
    at = Timestamp(micros=checkpoint.newest_us + int(hold_s * 1_000_000))
    yield beam.pvalue.TaggedOutput(OFFSETS_TAG, TimestampedValue(mark, at))

  def _progress(self, partition: int) -> SplitProgress:
    return self._partitions.setdefault(partition, SplitProgress())

  def _assign_new(self, unit: Slice, assigned: set[int], tracker) -> bool:
    """Assigns the unit's partitions not assigned yet, from their checkpoint; False if the
    tracker refused a claim (the call is to return).

    A partition new to the checkpoint starts at ``start`` if the unit has read
    nothing yet, else at its beginning: it was added while the read ran. Its
    start is resolved to an offset and claimed, so that a later call resumes
    there and not at whatever "latest" has become by then.
    """
    from confluent_kafka import TopicPartition

    topic = self._config.topic
    metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
    if metadata.error is not None:
      raise ValueError(f'kafka topic {topic}: {metadata.error.str()}')
    new = sorted(p for p in set(metadata.partitions) - assigned if unit.owns(p))
    checkpoint: TopicCheckpoint = tracker.current_restriction()
    fresh = not checkpoint.next_offsets
    for partition in new:
      if checkpoint.next_offset(partition) is None:
        low, high = self._consumer.get_watermark_offsets(
          TopicPartition(topic, partition), timeout=30
        )
        offset = high if fresh and self._config.start == LATEST else low
        if fresh and self._config.start == COMMITTED:
          offset = self._committed(partition, low)
        if not tracker.try_claim(_Start(partition, offset)):
          return False
    checkpoint = tracker.current_restriction()
    if new:
      self._consumer.incremental_assign(
        [TopicPartition(topic, p, checkpoint.next_offset(p)) for p in new]
      )
      assigned.update(new)
    return True

  def _committed(self, partition: int, earliest: int) -> int:
    """The group's committed offset of the partition, else ``earliest``."""
    from confluent_kafka import TopicPartition

    (committed,) = with_retries(
      self._consumer.committed, [TopicPartition(self._config.topic, partition)], timeout=30
    )
    if committed.error is not None:
      raise ValueError(f'kafka topic {self._config.topic}: {committed.error.str()}')
    return committed.offset if committed.offset >= 0 else earliest

  def _timestamped(self, message) -> TimestampedValue:
    config = self._config
    _, timestamp_ms = message.timestamp()
    arrival_us = timestamp_ms * 1000
    data = message.value() or b''
    event_us = config.event_time_fn(data) if config.event_time_fn else None
    partition = message.partition()
    return TimestampedValue(
      KafkaRecord(config.topic, partition, message.offset(), message.key(), data, arrival_us),
      self._progress(partition).element_time(event_us, arrival_us),
    )


class ReadFromKafka(beam.PTransform):
  """A Kafka topic's KafkaRecords: one unit of work per partition listed at start.

  A bounded read (``stop_after_idle_s`` or ``max_records``) is one unit over
  the whole topic; see the module docstring. With ``with_offsets`` (and a
  ``commit_hold_s`` in the config) it gives (records, OffsetsMarks).
  """

  def __init__(self, config: KafkaConfig, with_offsets: bool = False):
    super().__init__()
    if with_offsets and config.commit_hold_s is None:
      raise ValueError('OffsetsMarks need a commit hold (KafkaConfig.commit_hold_s)')
    self._config = config
    self._with_offsets = with_offsets

  @staticmethod
  def _units(config: KafkaConfig, partitions: Callable[[], list[int]]) -> list[Slice]:
    """The units of work: one per partition listed now, or one for a bounded read."""
    if config.bounded:
      return [WHOLE_TOPIC]
    count = len(partitions())
    return [Slice(index, count) for index in range(count)]

  def expand(self, pbegin):
    config = self._config

    def units(_) -> list[Slice]:
      return self._units(config, lambda: topic_partitions(config.bootstrap, config.topic))

    found = (
      pbegin
      | 'Units' >> beam.Impulse()
      | 'ListPartitions' >> beam.FlatMap(units).with_output_types(tuple[int, int])
    )
    if not config.bounded:
      found = found | 'Spread' >> beam.Reshuffle()
    read = typed_outputs(
      found
      | 'Read'
      >> beam.ParDo(ReadKafkaTopic(self._config))
      .with_output_types(KafkaRecord)
      .with_outputs(OFFSETS_TAG, main='records'),
      **{OFFSETS_TAG: OffsetsMark},
    )
    if self._with_offsets:
      return read.records, read[OFFSETS_TAG]
    return read.records
