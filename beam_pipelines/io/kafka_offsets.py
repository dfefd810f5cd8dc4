"""Committing the consumer group's Kafka offsets once the tables hold what came before.

The Kafka reader (kafka.py) emits an OffsetsMark per unit of work each time
it defers and when it stops: the next offset of each of its partitions,
timed ``commit_hold`` after the newest record before them. The hold is how
long, in event time, a record can wait in the pipeline before its rows are
written: a session's events are emitted once the watermark passes the
session's last event plus the gap and the allowed lateness, a session is cut
at the maximum session length, and rows are written when the watermark
closes their file window:

    commit_hold = max session length + session gap + allowed lateness + file window

CommitOffsets groups the marks in windows of event time together with the
writes of every table (as Beam's Java Wait.on does): a window fires only
when the watermark after the writers has passed it, that is when every file
of the rows before the mark has been written. Then the group's offsets are
committed (never moved back). A run that fails before its tables are
written commits nothing, and a run started from the committed offsets
(``--kafka-start committed``, the default) reads from there.

Not covered: a run of one key's events with no gap longer than the maximum
session length (a bot, unless filtered) is emitted later than the hold, and
a late record's dead letter is written in a late pane that no watermark
waits for. A restart from committed offsets re-reads what came after the
last commit, up to ``commit_hold`` of event time: the rows of records it
re-reads that were written already are written again (the windowed files of
a new job are not those of the old one). Flink restores from its own
checkpoints without either.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.transforms import window

from beam_pipelines.io.kafka import KafkaConfig, OffsetsMark
from beam_pipelines.io.kafka_topics import group_consumer, topic_partitions, with_retries

_LOGGER = logging.getLogger(__name__)


def commit_hold_s(
  max_session_s: float, gap_s: float, allowed_lateness_s: float, file_window_s: float
) -> float:
  """How long after its newest record a mark is committed, in event time (see above)."""
  return max_session_s + gap_s + allowed_lateness_s + file_window_s


def newest_offsets(marks) -> dict[int, int]:
  """The furthest next offset of each partition over the marks."""
  offsets: dict[int, int] = {}
  for mark in marks:
    for partition, offset in mark.next_offsets:
      offsets[partition] = max(offsets.get(partition, offset), offset)
  return offsets


class _Commit(beam.DoFn):
  def __init__(self, config: KafkaConfig):
    self._config = config
    self._committed: dict[int, int] = {}

  def setup(self):
    self._consumer = group_consumer(self._config.bootstrap, self._config.group_id)

  def teardown(self):
    self._consumer.close()

  def process(self, grouped):
    from confluent_kafka import TopicPartition

    topic, marks = grouped
    ahead = {
      partition: offset
      for partition, offset in newest_offsets(marks).items()
      if offset > self._committed.get(partition, -1)
    }
    if not ahead:
      return
    with_retries(
      self._consumer.commit,
      offsets=[TopicPartition(topic, p, o) for p, o in sorted(ahead.items())],
      asynchronous=False,
    )
    self._committed.update(ahead)
    _LOGGER.info('kafka %s: committed %s for %s', topic, ahead, self._config.group_id)
    yield topic, tuple(sorted(ahead.items()))


class CommitOffsets(beam.PTransform):
  """(OffsetsMarks, the WrittenFiles of each table) -> the offsets committed, per window.

  See the module docstring; ``window_s``: the windows marks wait in (the file window).
  """

  def __init__(self, config: KafkaConfig, window_s: float):
    super().__init__()
    self._config = config
    self._window_s = window_s

  def expand(self, inputs):
    marks, *writes = inputs
    windows = window.FixedWindows(self._window_s)
    keyed = (
      marks
      | 'KeyByTopic' >> beam.Map(lambda mark: (mark.topic, mark))
      | 'MarkWindows' >> beam.WindowInto(windows)
    )
    # The writes carry nothing but their watermark: the grouping waits for it.
    fences = [
      written
      | f'Fence{n}' >> beam.FlatMap(lambda _: ()).with_output_types(tuple[str, OffsetsMark])
      | f'FenceWindows{n}' >> beam.WindowInto(windows)
      for n, written in enumerate(writes)
    ]
    return (
      (keyed, *fences)
      | 'WithWrites' >> beam.Flatten()
      | 'PerWindow' >> beam.GroupByKey()
      | 'Commit' >> beam.ParDo(_Commit(self._config))
    )


def committed_offsets(bootstrap: str, topic: str, group: str) -> dict[int, int]:
  """The group's committed offset of each partition of the topic that has one."""
  from confluent_kafka import TopicPartition

  consumer = group_consumer(bootstrap, group)
  try:
    partitions = [TopicPartition(topic, p) for p in topic_partitions(bootstrap, topic)]
    committed = with_retries(consumer.committed, partitions, timeout=30)
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
  finally:
    consumer.close()
