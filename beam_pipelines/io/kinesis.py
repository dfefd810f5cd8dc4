"""ReadFromKinesis: a native Python Kinesis source (a splittable DoFn on boto3).

Beam's own Kinesis connector for Python is cross-language (a Java expansion
service from Maven and static keys); this one is plain boto3, with
credentials from the standard AWS chain only.

Units of work: a continuous read has one element per shard lineage (a shard
listed at start without a listed parent, its "root"), spread over the
workers by a Reshuffle, so that parallelism N reads N lineages at once. Each
element's restriction is its checkpoint: the shards it owns (the root and,
as they appear, the children of owned shards by ParentShardId, so that a
reshard splits or merges within a unit of work), the last (sequence number,
sub-sequence number) read per shard and the shards finished. A child is read
once its owned parents are finished, from its start whatever
``start_position`` says (it holds what was written after the reshard); an
adjacent parent of a merge owned by another unit is not waited for (its
unit holds the watermark back). A bounded read (a stop condition) is one
unit over the whole stream: "idle" and ``max_records`` are about the stream
as a whole. The DoFn de-aggregates KPL records (a checkpoint inside an
aggregate resumes at its next user record), retries throttling and
re-opens expired iterators, and defers its remainder every
``defer_every_s`` so that a runner can checkpoint it.

Event times and the watermark, per unit, follow stream_watermark.py (shared
with the Kafka reader): per shard the newest event time read less
``max_out_of_order``, a shard caught up for ``idle_timeout`` holding nothing
back, a record from a clock far ahead moving nothing. The stream's watermark
is the runner's minimum over units.

Local runs stop by condition: after ``stop_after_idle`` seconds without a
record, or after ``max_records``; then the watermark goes to the end of time.
Such a bounded read runs in one call until it stops, with no deferral: the
FnApiRunner passes each call's output downstream as a round of its own with
the watermark at the end, and event-time timers downstream fired between
rounds (measured), finalizing sessions before all their events had arrived.
An unbounded read polls for ``defer_every_s``, advancing its watermark,
then defers its remainder.

    p | ReadFromKinesis(config)
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Duration

from beam_pipelines.io.stream_watermark import SplitProgress, advance, unit_watermark

_LOGGER = logging.getLogger(__name__)

TRIM_HORIZON = 'TRIM_HORIZON'
LATEST = 'LATEST'
AT_TIMESTAMP = 'AT_TIMESTAMP'
START_POSITIONS = (TRIM_HORIZON, LATEST, AT_TIMESTAMP)
RETRYABLE = (
  'ProvisionedThroughputExceededException',
  'LimitExceededException',
  'ThrottlingException',
  'KMSThrottlingException',
  'InternalFailure',
  'ServiceUnavailable',
)
POLL_INTERVAL_S = 0.2
MAX_BACKOFF_S = 5.0


class KinesisRecord(NamedTuple):
  stream: str
  shard_id: str
  sequence_number: str
  sub_sequence_number: int  # position inside a KPL-aggregated record, else 0
  partition_key: str
  data: bytes
  arrival_time_us: int


@dataclass(frozen=True)
class KinesisConfig:
  stream: str
  endpoint_url: Optional[str] = None
  region: Optional[str] = None
  start_position: str = TRIM_HORIZON
  start_timestamp_s: Optional[float] = None  # for AT_TIMESTAMP
  stop_after_idle_s: Optional[float] = None
  max_records: Optional[int] = None
  idle_timeout_s: float = 5.0
  max_out_of_order_s: float = 60.0
  get_records_limit: int = 1000
  # How long an unbounded read polls in one call before it defers. Beam
  # 2.62's portable Flink runner keeps every deferral's residual in state
  # (apache/beam 27648): deferring after each poll grew the checkpoint by
  # ~17 KB/s (4 shards). A call of 5 s defers 25 times less often; in the
  # soak the reader's state then grew about half as fast (README). Checkpoints
  # wait for the call (finish_bundle_before_checkpointing).
  defer_every_s: float = 5.0
  event_time_fn: Optional[Callable[[bytes], Optional[int]]] = None  # -> UTC microseconds

  @property
  def bounded(self) -> bool:
    """A stop condition: one unit over the whole stream, read until it holds."""
    return self.stop_after_idle_s is not None or self.max_records is not None

  def __post_init__(self):
    if self.start_position not in START_POSITIONS:
      raise ValueError(f'start position {self.start_position!r} is not one of {START_POSITIONS}')
    if self.start_position == AT_TIMESTAMP and self.start_timestamp_s is None:
      raise ValueError('AT_TIMESTAMP needs a start timestamp')


Position = tuple[str, int]  # (sequence number, sub-sequence number) of a user record


@dataclass(frozen=True)
class StreamCheckpoint:
  """Where reading stands: the restriction of one unit of work."""

  # (shard_id, sequence number, sub-sequence number) of the last user record read
  after: tuple[tuple[str, str, int], ...] = ()
  finished: frozenset[str] = frozenset()  # closed shards read to their end
  records: int = 0  # read so far, for max_records
  stopped: bool = False
  owned: Optional[frozenset[str]] = None  # the unit's shards; None: the whole stream

  def last_position(self, shard_id: str) -> Optional[Position]:
    for shard, sequence, sub in self.after:
      if shard == shard_id:
        return sequence, sub
    return None


@dataclass
class _Claim:
  shard_id: str
  position: Optional[Position] = None  # None with finished=True: the shard ended
  finished: bool = False
  stop: bool = False
  adopt: bool = False  # a child of an owned shard becomes the unit's


class CheckpointTracker(RestrictionTracker):
  """Claims are read positions; a split at 0 hands the rest on as the residual."""

  def __init__(self, checkpoint: StreamCheckpoint):
    self._checkpoint = checkpoint
    self._after = {shard: (sequence, sub) for shard, sequence, sub in checkpoint.after}
    self._finished = set(checkpoint.finished)
    self._owned = None if checkpoint.owned is None else set(checkpoint.owned)
    self._records = checkpoint.records
    self._stopped = checkpoint.stopped
    self._split_done = False

  def current_restriction(self) -> StreamCheckpoint:
    return StreamCheckpoint(
      tuple(sorted((shard, *position) for shard, position in self._after.items())),
      frozenset(self._finished),
      self._records,
      self._stopped,
      None if self._owned is None else frozenset(self._owned),
    )

  def try_claim(self, claim: _Claim) -> bool:
    if self._stopped or self._split_done:
      return False
    if claim.stop:
      self._stopped = True
    elif claim.adopt:
      self._owned.add(claim.shard_id)  # type: ignore[union-attr]
    elif claim.finished:
      self._finished.add(claim.shard_id)
    else:
      self._after[claim.shard_id] = claim.position  # type: ignore[assignment]
      self._records += 1
    return True

  def try_split(self, fraction_of_remainder):
    if self._stopped or fraction_of_remainder != 0:
      return None
    # Primary: what was read (done). Residual: the same position, to go on from.
    self._split_done = True
    position = self.current_restriction()
    return replace(position, stopped=True), position

  def check_done(self):
    if not (self._stopped or self._split_done):
      raise ValueError('stream reading stopped without a stop claim or a checkpoint')

  def current_progress(self) -> RestrictionProgress:
    # Prism asks for it during a bundle (NotImplementedError failed the run);
    # Flink and the FnApiRunner did not. A stream has no end to measure
    # against: the records read are the work done, and some remains until
    # the read stops.
    return RestrictionProgress(completed=self._records, remaining=0 if self._stopped else 1)

  def is_bounded(self):
    return False

  def records_read(self) -> int:
    return self._records


class _CheckpointProvider(RestrictionProvider):
  """The element is a lineage root shard id, or '' for the whole stream."""

  def initial_restriction(self, element):
    return StreamCheckpoint(owned=frozenset([element]) if element else None)

  def create_tracker(self, restriction):
    return CheckpointTracker(restriction)

  def restriction_size(self, element, restriction):
    return 1


def kinesis_client(config: KinesisConfig):
  import boto3  # local: workers import it when they read, not at graph construction

  return boto3.client('kinesis', endpoint_url=config.endpoint_url, region_name=config.region)


def call_with_backoff(fn: Callable[..., Any], *, sleep=time.sleep, attempts: int = 12, **kwargs):
  """A Kinesis call retried with exponential backoff on throttling and transient errors.

  Lost connections (an endpoint restarting, a network blip) are retried too:
  12 attempts wait up to ~31 s in all before the error reaches the runner,
  which then restarts the read from its checkpoint. (With 8, ~11 s, an
  emulator restarting under a loaded test run was not back in time: seen.)
  """
  from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

  delay = 0.1
  for attempt in range(1, attempts + 1):
    try:
      return fn(**kwargs)
    except ClientError as e:
      code = e.response.get('Error', {}).get('Code', '')
      if code not in RETRYABLE or attempt == attempts:
        raise
    except (ConnectionError, HTTPClientError) as e:
      if attempt == attempts:
        raise
      code = type(e).__name__
    _LOGGER.info('kinesis %s: %s, retrying in %.1f s', fn.__name__, code, delay)
    sleep(delay)
    delay = min(delay * 2, MAX_BACKOFF_S)
  raise AssertionError('unreachable')


def list_shards(client, stream: str) -> list[dict]:
  shards, token = [], None
  while True:
    kwargs = {'NextToken': token} if token else {'StreamName': stream}
    page = call_with_backoff(client.list_shards, **kwargs)
    shards.extend(page['Shards'])
    token = page.get('NextToken')
    if not token:
      return shards


def lineage_roots(shards: list[dict]) -> list[str]:
  """Shards without a listed parent: one unit of work each."""
  known = {s['ShardId'] for s in shards}
  return sorted(s['ShardId'] for s in shards if s.get('ParentShardId') not in known)


def adoptable_shards(shards: list[dict], owned: set[str]) -> list[str]:
  """Shards not owned yet whose parent (by ParentShardId) is, to a fixpoint."""
  owned, adopted = set(owned), []
  grew = True
  while grew:
    grew = False
    for shard in shards:
      if shard['ShardId'] not in owned and shard.get('ParentShardId') in owned:
        owned.add(shard['ShardId'])
        adopted.append(shard['ShardId'])
        grew = True
  return adopted


def readable_shards(
  shards: list[dict], finished: set[str], owned: Optional[set[str]] = None
) -> list[str]:
  """Shards to read now: owned (None: all), not finished, owned parents all finished.

  A parent that is neither listed (expired) nor owned (another unit's) is
  not waited for.
  """
  known = {s['ShardId'] for s in shards}
  if owned is not None:
    known &= owned
  ready = []
  for shard in shards:
    shard_id = shard['ShardId']
    if shard_id in finished or (owned is not None and shard_id not in owned):
      continue
    parents = [shard.get('ParentShardId'), shard.get('AdjacentParentShardId')]
    if all(p is None or p not in known or p in finished for p in parents):
      ready.append(shard_id)
  return sorted(ready)


def deaggregate(records: list[dict]) -> Iterator[tuple[dict, int]]:
  """(user record, sub-sequence number): KPL-aggregated records split, others as they are."""
  from aws_kinesis_agg.deaggregator import iter_deaggregate_records

  for record in records:
    data = record['Data']
    if data[:4] != b'\xf3\x89\x9a\xc2':  # the KPL magic number
      yield record, 0
      continue
    for n, user in enumerate(iter_deaggregate_records(record, data_format='Boto3')):
      # The library hands user records back base64-encoded, as Lambda events carry them.
      yield (
        {
          **record,
          'Data': base64.b64decode(user['kinesis']['data']),
          'PartitionKey': user['kinesis']['partitionKey'],
        },
        n,
      )


@dataclass
class _ShardState(SplitProgress):
  iterator: Optional[str] = None
  skip_through: Optional[Position] = None  # re-read at an iterator's start: already claimed


_CHECKPOINTS = _CheckpointProvider()
_WATERMARKS = ManualWatermarkEstimator.default_provider()


class ReadKinesisStream(beam.DoFn):
  """Lineage root shard id ('' for the whole stream) -> KinesisRecords, unbounded.

  See the module docstring; ReadFromKinesis makes the elements.
  """

  def __init__(self, config: KinesisConfig):
    self._config = config

  @staticmethod
  def restriction_of(unit: str) -> StreamCheckpoint:
    """The starting restriction of a unit (a lineage root, or '' for the whole stream)."""
    return _CHECKPOINTS.initial_restriction(unit)

  def setup(self):
    self._client = kinesis_client(self._config)
    self._shards: dict[str, _ShardState] = {}  # by shard id
    self._last_record_at = time.monotonic()

  @beam.DoFn.unbounded_per_element()
  def process(
    self,
    unit: str,
    tracker=beam.DoFn.RestrictionParam(_CHECKPOINTS),
    watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
  ):
    config = self._config
    stream = config.stream
    call_started = time.monotonic()
    while True:
      checkpoint: StreamCheckpoint = tracker.current_restriction()
      shards = list_shards(self._client, stream)
      if checkpoint.owned is not None:
        for child in adoptable_shards(shards, set(checkpoint.owned)):
          if not tracker.try_claim(_Claim(child, adopt=True)):
            return
        checkpoint = tracker.current_restriction()
      parents = {
        s['ShardId']: (s.get('ParentShardId'), s.get('AdjacentParentShardId')) for s in shards
      }
      got_any = False
      ready = readable_shards(shards, set(checkpoint.finished), checkpoint.owned)
      for shard_id in ready:
        state = self._shards.setdefault(shard_id, _ShardState())
        # A child of a finished shard starts at its beginning: it holds what
        # was written after the reshard, whatever the start position says.
        from_start = any(p in checkpoint.finished for p in parents.get(shard_id, ()))
        records, state.iterator, finished = self._poll(shard_id, checkpoint, state, from_start)
        for record, sub in records:
          if (
            config.max_records is not None
            and tracker.current_restriction().records >= config.max_records
          ):
            state.iterator = None  # unread records stay after the checkpoint
            break
          position = (record['SequenceNumber'], sub)
          if not tracker.try_claim(_Claim(shard_id, position)):
            state.iterator = None  # reopen after the last claimed record next time
            return
          got_any = True
          yield self._timestamped(record, sub, shard_id, state)
        if finished and not tracker.try_claim(_Claim(shard_id, finished=True)):
          return
      now = time.monotonic()
      if got_any:
        self._last_record_at = now
      if self._should_stop(tracker, now):
        watermark.set_watermark(MAX_TIMESTAMP)
        tracker.try_claim(_Claim('', stop=True))
        return
      if config.bounded:
        # A bounded read stays in this call until it stops: the FnApiRunner hands
        # each call's output on as a round of its own, with the watermark already
        # at the end, and event-time timers downstream would fire between rounds
        # (measured: sessions finalized before all their events arrived).
        if not got_any:
          time.sleep(POLL_INTERVAL_S)
        continue
      unit_shards = checkpoint.owned if checkpoint.owned is not None else parents.keys()
      advance(
        watermark,
        unit_watermark(
          [self._shards[shard] for shard in ready],
          [self._shards[shard] for shard in unit_shards if shard in self._shards],
          now,
          config.idle_timeout_s,
          config.max_out_of_order_s,
        ),
      )
      if now - call_started < config.defer_every_s:
        if not got_any:
          time.sleep(POLL_INTERVAL_S)
        continue
      tracker.defer_remainder(Duration.of(0 if got_any else POLL_INTERVAL_S))
      return

  def _timestamped(self, record: dict, sub: int, shard_id: str, state: _ShardState):
    config = self._config
    arrival_us = int(record['ApproximateArrivalTimestamp'].timestamp() * 1_000_000)
    event_us = config.event_time_fn(record['Data']) if config.event_time_fn else None
    return TimestampedValue(
      KinesisRecord(
        config.stream,
        shard_id,
        record['SequenceNumber'],
        sub,
        record['PartitionKey'],
        record['Data'],
        arrival_us,
      ),
      state.element_time(event_us, arrival_us),
    )

  def _poll(
    self, shard_id: str, checkpoint: StreamCheckpoint, state: _ShardState, from_start: bool
  ):
    """(user records, next iterator, shard finished) of one GetRecords on a shard."""
    from botocore.exceptions import ClientError

    for _ in range(2):
      if state.iterator is None:
        after = checkpoint.last_position(shard_id)
        state.iterator = self._iterator(shard_id, after, from_start)
        state.skip_through = after
      try:
        response = call_with_backoff(
          self._client.get_records,
          ShardIterator=state.iterator,
          Limit=self._config.get_records_limit,
        )
        break
      except ClientError as e:
        if e.response.get('Error', {}).get('Code') != 'ExpiredIteratorException':
          raise
        _LOGGER.info('kinesis iterator of %s expired; reopening after the last read', shard_id)
        state.iterator = None
    else:
      raise RuntimeError(f'kinesis shard {shard_id}: iterator expired twice in a row')
    records = list(deaggregate(response['Records']))
    if state.skip_through is not None and response['Records']:
      # The iterator opened AT the last record read: what of it was claimed
      # (all of a plain record, the first user records of an aggregate) goes.
      sequence, sub = state.skip_through
      records = [(r, n) for r, n in records if not (r['SequenceNumber'] == sequence and n <= sub)]
      state.skip_through = None
    next_iterator = response.get('NextShardIterator')
    if not records and response.get('MillisBehindLatest', 0) == 0:
      state.caught_up(time.monotonic())
    return records, next_iterator, next_iterator is None

  def _iterator(self, shard_id: str, after: Optional[Position], from_start: bool) -> str:
    config = self._config
    kwargs: dict[str, Any] = {'StreamName': config.stream, 'ShardId': shard_id}
    if after is not None:
      kwargs.update(ShardIteratorType='AT_SEQUENCE_NUMBER', StartingSequenceNumber=after[0])
    elif from_start:
      kwargs.update(ShardIteratorType=TRIM_HORIZON)
    elif config.start_position == AT_TIMESTAMP:
      kwargs.update(ShardIteratorType=AT_TIMESTAMP, Timestamp=config.start_timestamp_s)
    else:
      kwargs.update(ShardIteratorType=config.start_position)
    return call_with_backoff(self._client.get_shard_iterator, **kwargs)['ShardIterator']

  def _should_stop(self, tracker, now: float) -> bool:
    config = self._config
    if (
      config.max_records is not None and tracker.current_restriction().records >= config.max_records
    ):
      return True
    return (
      config.stop_after_idle_s is not None
      and now - self._last_record_at >= config.stop_after_idle_s
    )


class ReadFromKinesis(beam.PTransform):
  """A Kinesis stream's KinesisRecords: one unit of work per shard lineage.

  A bounded read (``stop_after_idle_s`` or ``max_records``) is one unit over
  the whole stream; see the module docstring.
  """

  def __init__(self, config: KinesisConfig):
    super().__init__()
    self._config = config

  def expand(self, pbegin):
    config = self._config

    def units(_) -> list[str]:
      if config.bounded:
        return ['']
      return lineage_roots(list_shards(kinesis_client(config), config.stream))

    # Impulse and FlatMap rather than Create: Prism refuses the pickled
    # MaybeReshuffle of a one-element Create.
    found = (
      pbegin
      | 'Units' >> beam.Impulse()
      | 'ListShards' >> beam.FlatMap(units).with_output_types(str)
    )
    if not config.bounded:
      found = found | 'Spread' >> beam.Reshuffle()
    return found | 'Read' >> beam.ParDo(ReadKinesisStream(config)).with_output_types(KinesisRecord)
