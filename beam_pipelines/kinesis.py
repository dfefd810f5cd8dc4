"""ReadFromKinesis: a native Python Kinesis source (a splittable DoFn on boto3).

Beam's own Kinesis connector for Python is cross-language (a Java expansion
service from Maven and static keys); this one is plain boto3, with
credentials from the standard AWS chain only.

One element per stream; its restriction is the stream's checkpoint: the last
sequence number read per shard and the shards finished. The DoFn discovers
shards, reads every open shard whose parents are finished (after a reshard,
children start only when their parents are done: ChildShards), de-aggregates
KPL records, retries throttling and re-opens expired iterators, and defers
its remainder between polls so that a runner can checkpoint it. A restart
from a checkpoint continues AFTER the last sequence number of each shard.

Watermark: per shard, the newest event time seen minus ``max_out_of_order``
(event time from ``event_time_fn``, else the record's arrival time; never
later than the record's arrival, and a record more than a day ahead of its
arrival, a client clock gone wrong, moves nothing); the
stream's watermark is the minimum over shards that are not idle; a shard
caught up for ``idle_timeout`` seconds holds nothing back.

Local runs stop by condition: after ``stop_after_idle`` seconds without a
record, or after ``max_records``; then the watermark goes to the end of time.
Such a bounded read runs in one call until it stops, with no deferral: the
FnApiRunner passes each call's output downstream as a round of its own with
the watermark at the end, and event-time timers downstream fired between
rounds (measured), finalizing sessions before all their events had arrived.
An unbounded read defers between polls and advances its watermark.

    p | beam.Create([stream]) | beam.ParDo(ReadKinesisStream(config))
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.iobase import RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp

from transforms.event_time import MAX_FUTURE_US

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
  event_time_fn: Optional[Callable[[bytes], Optional[int]]] = None  # -> UTC microseconds

  def __post_init__(self):
    if self.start_position not in START_POSITIONS:
      raise ValueError(f'start position {self.start_position!r} is not one of {START_POSITIONS}')
    if self.start_position == AT_TIMESTAMP and self.start_timestamp_s is None:
      raise ValueError('AT_TIMESTAMP needs a start timestamp')


@dataclass(frozen=True)
class StreamCheckpoint:
  """Where reading stands: the restriction of one stream element."""

  after: tuple[tuple[str, str], ...] = ()  # (shard_id, last sequence number read)
  finished: frozenset[str] = frozenset()  # closed shards read to their end
  records: int = 0  # read so far, for max_records
  stopped: bool = False

  def last_sequence(self, shard_id: str) -> Optional[str]:
    return dict(self.after).get(shard_id)


@dataclass
class _Claim:
  shard_id: str
  sequence_number: Optional[str] = None  # None with finished=True: the shard ended
  finished: bool = False
  stop: bool = False


class CheckpointTracker(RestrictionTracker):
  """Claims are read positions; a split at 0 hands the rest on as the residual."""

  def __init__(self, checkpoint: StreamCheckpoint):
    self._checkpoint = checkpoint
    self._after = dict(checkpoint.after)
    self._finished = set(checkpoint.finished)
    self._records = checkpoint.records
    self._stopped = checkpoint.stopped
    self._split_done = False

  def current_restriction(self) -> StreamCheckpoint:
    return StreamCheckpoint(
      tuple(sorted(self._after.items())), frozenset(self._finished), self._records, self._stopped
    )

  def try_claim(self, claim: _Claim) -> bool:
    if self._stopped or self._split_done:
      return False
    if claim.stop:
      self._stopped = True
      return True
    if claim.finished:
      self._finished.add(claim.shard_id)
      return True
    self._after[claim.shard_id] = claim.sequence_number  # type: ignore[assignment]
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

  def is_bounded(self):
    return False

  def records_read(self) -> int:
    return self._records


class _CheckpointProvider(RestrictionProvider):
  def initial_restriction(self, element):
    return StreamCheckpoint()

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


def readable_shards(shards: list[dict], finished: set[str]) -> list[str]:
  """Shards to read now: not finished, and every parent present is finished."""
  known = {s['ShardId'] for s in shards}
  ready = []
  for shard in shards:
    if shard['ShardId'] in finished:
      continue
    parents = [shard.get('ParentShardId'), shard.get('AdjacentParentShardId')]
    if all(p is None or p not in known or p in finished for p in parents):
      ready.append(shard['ShardId'])
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
class _ShardState:
  iterator: Optional[str] = None
  newest_event_us: Optional[int] = None
  caught_up_since: Optional[float] = None


@dataclass
class _WatermarkState:
  shards: dict[tuple[str, str], _ShardState] = field(default_factory=dict)  # (stream, shard)


_CHECKPOINTS = _CheckpointProvider()
_WATERMARKS = ManualWatermarkEstimator.default_provider()


class ReadKinesisStream(beam.DoFn):
  """Stream name -> KinesisRecords, unbounded (see the module docstring)."""

  def __init__(self, config: KinesisConfig):
    self._config = config

  def setup(self):
    self._client = kinesis_client(self._config)
    self._state = _WatermarkState()
    self._last_record_at = time.monotonic()

  @beam.DoFn.unbounded_per_element()
  def process(
    self,
    stream: str,
    tracker=beam.DoFn.RestrictionParam(_CHECKPOINTS),
    watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
  ):
    config = self._config
    while True:
      checkpoint: StreamCheckpoint = tracker.current_restriction()
      got_any = False
      for shard_id in readable_shards(list_shards(self._client, stream), set(checkpoint.finished)):
        state = self._state.shards.setdefault((stream, shard_id), _ShardState())
        records, state.iterator, finished = self._poll(stream, shard_id, checkpoint, state)
        for record, sub in records:
          if (
            config.max_records is not None
            and tracker.current_restriction().records >= config.max_records
          ):
            state.iterator = None  # unread records stay after the checkpoint
            break
          if not tracker.try_claim(_Claim(shard_id, record['SequenceNumber'])):
            state.iterator = None  # reopen after the last claimed record next time
            return
          got_any = True
          arrival_us = int(record['ApproximateArrivalTimestamp'].timestamp() * 1_000_000)
          event_us = (
            config.event_time_fn(record['Data']) if config.event_time_fn else None
          ) or arrival_us
          # A client clock running ahead (one record stamped 2100) must not move
          # the watermark, or every record after it would be late: a record
          # more than MAX_FUTURE_US ahead of its arrival (a clock_skew dead
          # letter downstream) moves nothing, and no other moves it past its
          # arrival.
          if event_us <= arrival_us + MAX_FUTURE_US:
            progress_us = min(event_us, arrival_us)
            if state.newest_event_us is None or progress_us > state.newest_event_us:
              state.newest_event_us = progress_us
          else:
            # Its element time is where the shard stands, so its dead letter is
            # written with the rows around it, not in a window of 2100.
            event_us = state.newest_event_us or arrival_us
          yield TimestampedValue(
            KinesisRecord(
              stream,
              shard_id,
              record['SequenceNumber'],
              sub,
              record['PartitionKey'],
              record['Data'],
              arrival_us,
            ),
            Timestamp(micros=max(event_us, MIN_TIMESTAMP.micros + 1)),
          )
        if finished and not tracker.try_claim(_Claim(shard_id, finished=True)):
          return
      now = time.monotonic()
      if got_any:
        self._last_record_at = now
      if self._should_stop(tracker, now):
        watermark.set_watermark(MAX_TIMESTAMP)
        tracker.try_claim(_Claim('', stop=True))
        return
      if self._bounded():
        # A bounded read stays in this call until it stops: the FnApiRunner hands
        # each call's output on as a round of its own, with the watermark already
        # at the end, and event-time timers downstream would fire between rounds
        # (measured: sessions finalized before all their events arrived).
        if not got_any:
          time.sleep(POLL_INTERVAL_S)
        continue
      self._advance_watermark(watermark, now)
      tracker.defer_remainder(Duration.of(0 if got_any else POLL_INTERVAL_S))
      return

  def _poll(self, stream: str, shard_id: str, checkpoint: StreamCheckpoint, state: _ShardState):
    """(records, next iterator, shard finished) of one GetRecords on a shard."""
    from botocore.exceptions import ClientError

    for _ in range(2):
      if state.iterator is None:
        state.iterator = self._iterator(stream, shard_id, checkpoint.last_sequence(shard_id))
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
    next_iterator = response.get('NextShardIterator')
    if not records and response.get('MillisBehindLatest', 0) == 0:
      state.caught_up_since = state.caught_up_since or time.monotonic()
    elif records:
      state.caught_up_since = None
    return records, next_iterator, next_iterator is None

  def _iterator(self, stream: str, shard_id: str, after: Optional[str]) -> str:
    config = self._config
    kwargs: dict[str, Any] = {'StreamName': stream, 'ShardId': shard_id}
    if after is not None:
      kwargs.update(ShardIteratorType='AFTER_SEQUENCE_NUMBER', StartingSequenceNumber=after)
    elif config.start_position == AT_TIMESTAMP:
      kwargs.update(ShardIteratorType=AT_TIMESTAMP, Timestamp=config.start_timestamp_s)
    else:
      kwargs.update(ShardIteratorType=config.start_position)
    return call_with_backoff(self._client.get_shard_iterator, **kwargs)['ShardIterator']

  def _bounded(self) -> bool:
    return self._config.stop_after_idle_s is not None or self._config.max_records is not None

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

  def _advance_watermark(self, watermark, now: float) -> None:
    lag_us = int(self._config.max_out_of_order_s * 1_000_000)
    seen = [s for s in self._state.shards.values() if s.newest_event_us is not None]
    holding = [
      s.newest_event_us - lag_us
      for s in seen
      if not (
        s.caught_up_since is not None and now - s.caught_up_since >= self._config.idle_timeout_s
      )
    ]
    if not holding:
      # Every shard is caught up and idle: all that was read is out, so the
      # newest time seen anywhere may pass. (Holding still here froze the
      # watermark short of the last sessions once the stream went quiet: seen
      # on Flink.)
      holding = [max(s.newest_event_us for s in seen) - lag_us] if seen else []
    if not holding:
      return
    candidate = Timestamp(micros=min(holding))
    current = watermark.current_watermark()
    if current is None or candidate > current:
      watermark.set_watermark(candidate)
