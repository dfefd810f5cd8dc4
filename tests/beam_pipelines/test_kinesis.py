"""The Kinesis source against kinesis-local (a real emulator), plus Stubber for throttling."""

from __future__ import annotations

import json
import time

import apache_beam as beam
import boto3
import pytest
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import MAX_TIMESTAMP
from botocore.stub import Stubber

from beam_pipelines.io.kinesis import (
  AT_TIMESTAMP,
  CheckpointTracker,
  KinesisConfig,
  ReadFromKinesis,
  ReadKinesisStream,
  StreamCheckpoint,
  _Claim,
  _ShardState,
  adoptable_shards,
  call_with_backoff,
  lineage_roots,
  readable_shards,
)
from tests.conftest import beam_pipeline

REGION = 'us-east-1'


def client(endpoint):
  return boto3.client('kinesis', endpoint_url=endpoint, region_name=REGION)


def create_stream(kinesis, name: str, shards: int) -> None:
  kinesis.create_stream(StreamName=name, ShardCount=shards)
  wait_active(kinesis, name)


def wait_active(kinesis, name: str) -> None:
  for _ in range(100):
    if (
      kinesis.describe_stream_summary(StreamName=name)['StreamDescriptionSummary']['StreamStatus']
      == 'ACTIVE'
    ):
      return
    time.sleep(0.1)
  raise TimeoutError(name)


def put(kinesis, name: str, payloads: list[bytes], key=lambda n: f'k{n}') -> None:
  for start in range(0, len(payloads), 500):
    batch = payloads[start : start + 500]
    response = kinesis.put_records(
      StreamName=name,
      Records=[{'Data': data, 'PartitionKey': key(start + n)} for n, data in enumerate(batch)],
    )
    assert response['FailedRecordCount'] == 0


def read_directly(config: KinesisConfig, checkpoint=None, rounds: int = 400, unit: str = ''):
  """Drives the DoFn by hand, as a runner would: process, defer, resume.

  ``unit``: a lineage root shard id, or '' for the whole stream.
  """
  checkpoint = checkpoint or ReadKinesisStream(config).restriction_of(unit)
  dofn = ReadKinesisStream(config)
  dofn.setup()
  records = []
  for _ in range(rounds):
    tracker = ThreadsafeRestrictionTracker(CheckpointTracker(checkpoint))
    estimator = ManualWatermarkEstimator(None)
    for output in dofn.process(unit, tracker=RestrictionTrackerView(tracker), watermark=estimator):
      records.append(output.value)
    residual = tracker.deferred_status()
    if residual is None:  # stopped: reading is over
      return records, tracker.current_restriction(), estimator.current_watermark()
    checkpoint = residual[0]
  raise AssertionError('the reader never stopped')


@pytest.fixture
def kinesis(kinesis_endpoint, aws_credentials):
  return client(kinesis_endpoint)


def config(endpoint, stream, **kwargs):
  return KinesisConfig(
    stream=stream,
    endpoint_url=endpoint,
    region=REGION,
    stop_after_idle_s=kwargs.pop('stop_after_idle_s', 1.0),
    **kwargs,
  )


def test_pipeline_reads_every_record_of_every_shard(kinesis, kinesis_endpoint):
  payloads = [b'{"n":%d}' % n for n in range(300)]
  create_stream(kinesis, 'all-shards', 3)
  put(kinesis, 'all-shards', payloads)
  with beam_pipeline() as p:
    records = p | ReadFromKinesis(config(kinesis_endpoint, 'all-shards'))
    assert_that(records | beam.Map(lambda r: r.data), equal_to(payloads))


def test_restart_from_a_checkpoint_loses_and_repeats_nothing(kinesis, kinesis_endpoint):
  payloads = [b'{"n":%d}' % n for n in range(250)]
  create_stream(kinesis, 'restart', 2)
  put(kinesis, 'restart', payloads)
  first, checkpoint, _ = read_directly(config(kinesis_endpoint, 'restart', max_records=100))
  assert len(first) == 100
  # A new worker resumes from the checkpoint alone (no iterators, no memory).
  rest, _, watermark = read_directly(
    config(kinesis_endpoint, 'restart'), checkpoint=StreamCheckpoint(checkpoint.after)
  )
  assert sorted(r.data for r in first + rest) == sorted(payloads)
  assert watermark == MAX_TIMESTAMP


def test_resharding_mid_read_finishes_parents_before_children(kinesis, kinesis_endpoint):
  create_stream(kinesis, 'reshard', 1)
  put(kinesis, 'reshard', [b'before-%d' % n for n in range(50)])
  kinesis.update_shard_count(
    StreamName='reshard', TargetShardCount=2, ScalingType='UNIFORM_SCALING'
  )
  wait_active(kinesis, 'reshard')
  put(kinesis, 'reshard', [b'after-%d' % n for n in range(50)])
  records, checkpoint, _ = read_directly(config(kinesis_endpoint, 'reshard'))
  assert sorted(r.data for r in records) == sorted(
    [b'before-%d' % n for n in range(50)] + [b'after-%d' % n for n in range(50)]
  )
  parent = records[0].shard_id
  assert all(r.shard_id == parent for r in records[:50])  # the parent first, whole
  assert parent in checkpoint.finished


def test_at_timestamp_starts_at_that_arrival_time(kinesis, kinesis_endpoint):
  create_stream(kinesis, 'at-time', 1)
  put(kinesis, 'at-time', [b'old-%d' % n for n in range(20)])
  # The start is taken from the emulator's own arrival times, not this clock:
  # the machine's clock was seen to jump, and a start the emulator thinks is in
  # the future is refused ("Timestamp cannot be in the future").
  shard = kinesis.list_shards(StreamName='at-time')['Shards'][0]['ShardId']
  iterator = kinesis.get_shard_iterator(
    StreamName='at-time', ShardId=shard, ShardIteratorType='TRIM_HORIZON'
  )['ShardIterator']
  old = kinesis.get_records(ShardIterator=iterator)['Records']
  start = max(r['ApproximateArrivalTimestamp'].timestamp() for r in old) + 0.001
  time.sleep(1.0)
  put(kinesis, 'at-time', [b'new-%d' % n for n in range(20)])
  records, _, _ = read_directly(
    config(kinesis_endpoint, 'at-time', start_position=AT_TIMESTAMP, start_timestamp_s=start)
  )
  assert sorted(r.data for r in records) == sorted(b'new-%d' % n for n in range(20))


def test_empty_shards_do_not_hold_reading(kinesis, kinesis_endpoint):
  create_stream(kinesis, 'mostly-empty', 4)
  put(kinesis, 'mostly-empty', [b'x%d' % n for n in range(30)], key=lambda n: 'one-key')
  records, _, _ = read_directly(config(kinesis_endpoint, 'mostly-empty'))
  assert len(records) == 30 and len({r.shard_id for r in records}) == 1


def test_readable_shards_wait_for_parents():
  shards = [
    {'ShardId': 'a'},
    {'ShardId': 'b', 'ParentShardId': 'a'},
    {'ShardId': 'c', 'ParentShardId': 'a', 'AdjacentParentShardId': 'x'},
  ]
  assert readable_shards(shards, set()) == ['a']
  assert readable_shards(shards, {'a'}) == ['b', 'c']  # x expired: not listed any more


def test_throttling_is_retried_with_backoff():
  kinesis = boto3.client(
    'kinesis', region_name=REGION, aws_access_key_id='x', aws_secret_access_key='x'
  )
  stubber = Stubber(kinesis)
  for _ in range(2):
    stubber.add_client_error('list_shards', 'ProvisionedThroughputExceededException')
  stubber.add_response('list_shards', {'Shards': []}, {'StreamName': 's'})
  sleeps = []
  with stubber:
    assert call_with_backoff(kinesis.list_shards, sleep=sleeps.append, StreamName='s') == {
      'Shards': []
    }
  assert sleeps == [0.1, 0.2]
  stubber.add_client_error('list_shards', 'ResourceNotFoundException')
  with stubber, pytest.raises(Exception, match='ResourceNotFoundException'):
    call_with_backoff(kinesis.list_shards, sleep=sleeps.append, StreamName='s')


def test_an_expired_iterator_is_reopened_after_the_last_read(kinesis, kinesis_endpoint):
  create_stream(kinesis, 'expiry', 1)
  put(kinesis, 'expiry', [b'r%d' % n for n in range(10)])
  reader = ReadKinesisStream(config(kinesis_endpoint, 'expiry'))
  reader.setup()
  real = reader._client
  stubbed = client(kinesis_endpoint)
  stubber = Stubber(stubbed)
  stubber.add_client_error('get_records', 'ExpiredIteratorException')
  calls = []

  class OnceExpired:
    def __getattr__(self, name):
      if name == 'get_records' and not calls:
        calls.append(1)
        return stubbed.get_records
      return getattr(real, name)

  reader._client = OnceExpired()
  with stubber:
    records, _, finished = reader._poll(
      real.list_shards(StreamName='expiry')['Shards'][0]['ShardId'],
      StreamCheckpoint(),
      _ShardState(),
      from_start=False,
    )
  assert [r['Data'] for r, _ in records] == [b'r%d' % n for n in range(10)]
  assert calls == [1] and not finished


def put_aggregate_then_plain(kinesis, name: str) -> None:
  """A new one-shard stream with a KPL aggregate of user-0..4, then a plain record."""
  from aws_kinesis_agg.aggregator import RecordAggregator

  create_stream(kinesis, name, 1)
  aggregator = RecordAggregator()
  for n in range(5):
    aggregator.add_user_record(f'k{n}', b'user-%d' % n)
  partition_key, _, data = aggregator.clear_and_get().get_contents()
  kinesis.put_record(StreamName=name, Data=data, PartitionKey=partition_key)
  put(kinesis, name, [b'plain'])


def test_kpl_aggregated_records_are_split_into_user_records(kinesis, kinesis_endpoint):
  put_aggregate_then_plain(kinesis, 'aggregated')
  records, _, _ = read_directly(config(kinesis_endpoint, 'aggregated'))
  assert [(r.data, r.sub_sequence_number) for r in records] == [
    (b'user-0', 0),
    (b'user-1', 1),
    (b'user-2', 2),
    (b'user-3', 3),
    (b'user-4', 4),
    (b'plain', 0),
  ]


def test_a_checkpoint_inside_a_kpl_aggregate_resumes_at_its_next_user_record(
  kinesis, kinesis_endpoint
):
  put_aggregate_then_plain(kinesis, 'aggregate-split')
  first, checkpoint, _ = read_directly(config(kinesis_endpoint, 'aggregate-split', max_records=2))
  assert [r.data for r in first] == [b'user-0', b'user-1']
  ((_, sequence, sub),) = checkpoint.after
  assert sub == 1 and sequence == first[1].sequence_number
  rest, _, _ = read_directly(
    config(kinesis_endpoint, 'aggregate-split'), checkpoint=StreamCheckpoint(checkpoint.after)
  )
  assert [r.data for r in rest] == [b'user-2', b'user-3', b'user-4', b'plain']


def test_lineage_roots_and_the_children_a_unit_adopts():
  shards = [
    {'ShardId': 'a', 'ParentShardId': 'expired'},
    {'ShardId': 'b'},
    {'ShardId': 'a1', 'ParentShardId': 'a'},
    {'ShardId': 'a2', 'ParentShardId': 'a'},
    {'ShardId': 'ab', 'ParentShardId': 'a2', 'AdjacentParentShardId': 'b'},
  ]
  assert lineage_roots(shards) == ['a', 'b']
  assert sorted(adoptable_shards(shards, {'a'})) == ['a1', 'a2', 'ab']
  assert adoptable_shards(shards, {'b'}) == []
  owned = {'a', 'a1', 'a2', 'ab'}
  assert readable_shards(shards, set(), owned) == ['a']
  assert readable_shards(shards, {'a'}, owned) == ['a1', 'a2']
  # b is another unit's: the merge child waits for its own parent only.
  assert readable_shards(shards, {'a', 'a2'}, owned) == ['a1', 'ab']


def test_each_lineage_is_read_by_its_own_unit_through_a_reshard(kinesis, kinesis_endpoint):
  create_stream(kinesis, 'units', 2)
  put(kinesis, 'units', [b'before-%d' % n for n in range(60)])
  roots = lineage_roots(kinesis.list_shards(StreamName='units')['Shards'])
  assert len(roots) == 2
  kinesis.update_shard_count(StreamName='units', TargetShardCount=4, ScalingType='UNIFORM_SCALING')
  wait_active(kinesis, 'units')
  put(kinesis, 'units', [b'after-%d' % n for n in range(60)])
  shards = {s['ShardId']: s for s in kinesis.list_shards(StreamName='units')['Shards']}
  per_unit = []
  for root in roots:
    # Unbounded: each call defers; stop once the unit has read its lineage.
    unbounded = config(kinesis_endpoint, 'units', stop_after_idle_s=None, defer_every_s=0)
    records, checkpoint = read_unit(unbounded, root)
    assert {r.shard_id for r in records} <= checkpoint.owned
    assert root in checkpoint.finished and len(checkpoint.owned) > 1
    assert all(
      shards[s].get('ParentShardId') in checkpoint.owned for s in checkpoint.owned - {root}
    )
    per_unit.append(records)
  data = sorted(r.data for records in per_unit for r in records)
  assert data == sorted(
    [b'before-%d' % n for n in range(60)] + [b'after-%d' % n for n in range(60)]
  )


def test_an_unbounded_call_polls_until_it_is_time_to_defer(kinesis, kinesis_endpoint):
  """Each deferral costs state on portable Flink, so a call polls for defer_every_s:
  30 records at 10 per GetRecords take three polls, all in the first call."""
  create_stream(kinesis, 'long-call', 1)
  put(kinesis, 'long-call', [b'r%d' % n for n in range(30)])
  reader = ReadKinesisStream(
    config(
      kinesis_endpoint,
      'long-call',
      stop_after_idle_s=None,
      get_records_limit=10,
      defer_every_s=1.0,
    )
  )
  reader.setup()
  tracker = ThreadsafeRestrictionTracker(CheckpointTracker(StreamCheckpoint()))
  view = RestrictionTrackerView(tracker)
  got = [
    o.value for o in reader.process('', tracker=view, watermark=ManualWatermarkEstimator(None))
  ]
  assert sorted(r.data for r in got) == sorted(b'r%d' % n for n in range(30))
  residual = tracker.deferred_status()
  assert residual is not None  # it deferred once, at the end
  assert len(residual[0].after) == 1 and residual[0].records == 30


def read_unit(config: KinesisConfig, root: str, rounds: int = 200):
  """An unbounded unit driven by hand until it has been idle for a few calls."""
  dofn = ReadKinesisStream(config)
  dofn.setup()
  checkpoint, records, quiet = dofn.restriction_of(root), [], 0
  for _ in range(rounds):
    tracker = ThreadsafeRestrictionTracker(CheckpointTracker(checkpoint))
    view = RestrictionTrackerView(tracker)
    got = [
      o.value for o in dofn.process(root, tracker=view, watermark=ManualWatermarkEstimator(None))
    ]
    records.extend(got)
    checkpoint = tracker.deferred_status()[0]
    quiet = 0 if got else quiet + 1
    if quiet >= 10:
      return records, checkpoint
  raise AssertionError('the unit never went quiet')
  assert [r.partition_key for r in records[:5]] == [f'k{n}' for n in range(5)]


PERSISTED_FILE = 'kinesis-data.json'


def persisted_state(folder, records: int = 600) -> bytes:
  """kinesis-local's persisted file once it holds every record put (it rewrites it every 200 ms)."""
  path = folder / PERSISTED_FILE
  deadline = time.monotonic() + 30
  while time.monotonic() < deadline:
    data = path.read_bytes() if path.exists() else b''
    try:
      json.loads(data)
    except ValueError:  # caught mid-write
      pass
    else:
      if data.count(b'"PartitionKey"') >= records:  # a key of every persisted record
        return data
    time.sleep(0.05)
  raise AssertionError(f'kinesis-local did not persist {records} records in 30 s')


def test_an_emulator_restart_mid_read_loses_and_repeats_nothing(aws_credentials, tmp_path):
  """The endpoint goes away mid-read and comes back (its data persisted): the
  reader retries the lost connection, carries on after the last record read,
  and ends with every record exactly once."""
  import threading

  from beam_pipelines.dev.kinesis_emulator import start_emulator
  from beam_pipelines.dev.local_services import free_port, stop

  plain, tls = free_port(), free_port()
  endpoint = f'http://127.0.0.1:{plain}'
  process = start_emulator(plain, tls, str(tmp_path))
  try:
    kinesis = client(endpoint)
    create_stream(kinesis, 'restart', 1)
    payloads = [b'r%04d' % n for n in range(600)]
    put(kinesis, 'restart', payloads)
    state = persisted_state(tmp_path)
    reader = ReadKinesisStream(
      config(endpoint, 'restart', get_records_limit=100, stop_after_idle_s=3.0)
    )
    reader.setup()
    tracker = ThreadsafeRestrictionTracker(CheckpointTracker(StreamCheckpoint()))
    outputs = reader.process(
      '', tracker=RestrictionTrackerView(tracker), watermark=ManualWatermarkEstimator(None)
    )
    read = [next(outputs).value for _ in range(250)]
    stop(process)  # mid-read: 250 of 600 records read
    # With persistence on, kinesis-local ignores SIGTERM, and the SIGKILL that
    # follows can land while it rewrites its file: 1 stop in 6 left it empty
    # and the restart then failed (NoSuchElementException; seen in full runs).
    # This test is about the reader: the emulator gets its complete state back.
    (tmp_path / PERSISTED_FILE).write_bytes(state)
    restarted = []
    timer = threading.Timer(
      0.5, lambda: restarted.append(start_emulator(plain, tls, str(tmp_path)))
    )
    timer.start()
    read.extend(output.value for output in outputs)
    timer.join()
    process = restarted[0]
  finally:
    stop(process)
  assert [record.data for record in read] == payloads
  assert len({record.sequence_number for record in read}) == 600


def test_a_client_clock_far_ahead_never_moves_the_watermark(kinesis, kinesis_endpoint):
  """One record stamped 2100 among live ones: the watermark stays behind arrival."""
  from beam_pipelines.pipelines.streaming_pipeline import json_event_time

  create_stream(kinesis, 'skew', 1)
  now_s = time.time()

  def at(offset_s: float) -> bytes:
    return json.dumps({'event_time': now_s + offset_s}).encode()

  put(kinesis, 'skew', [at(-2), b'{"event_time": "2100-01-01T00:00:00Z"}', at(-1)])
  dofn = ReadKinesisStream(
    config(
      kinesis_endpoint,
      'skew',
      stop_after_idle_s=None,
      event_time_fn=json_event_time,
      max_out_of_order_s=1,
      defer_every_s=0,
    )
  )
  dofn.setup()
  estimator = ManualWatermarkEstimator(None)
  checkpoint, read = StreamCheckpoint(), []
  for _ in range(50):  # unbounded: each call reads, advances the watermark, defers
    tracker = ThreadsafeRestrictionTracker(CheckpointTracker(checkpoint))
    view = RestrictionTrackerView(tracker)
    read.extend(dofn.process('', tracker=view, watermark=estimator))
    checkpoint = tracker.deferred_status()[0]
    if len(read) == 3:
      break
  assert len(read) == 3
  # Against the records' own arrival times, not this clock: the machine's clock
  # was seen to jump while the suite ran.
  arrivals = [r.value.arrival_time_us for r in read]
  watermark_us = estimator.current_watermark().micros
  # Without the cap the 2100 record would put it at 2100 minus 1 s.
  assert watermark_us < max(arrivals)
  # The skewed record (a clock_skew dead letter downstream) is timed where its
  # shard stands, so its letter is written with the records around it.
  skewed = next(r for r in read if b'2100' in r.value.data)
  assert skewed.timestamp.micros <= max(arrivals)


def watermark_once_idle(kinesis_endpoint, stream: str, quiet_s: float = 2.5) -> tuple[int, list]:
  """Reads a one-shard stream unbounded, call by call, until it has read nothing for
  ``quiet_s`` (well past the 1 s bound); returns the watermark then (µs) and the
  records read."""
  from beam_pipelines.pipelines.streaming_pipeline import json_event_time

  dofn = ReadKinesisStream(
    config(
      kinesis_endpoint,
      stream,
      stop_after_idle_s=None,
      event_time_fn=json_event_time,
      max_out_of_order_s=1,
      idle_timeout_s=0.2,
      defer_every_s=0,
    )
  )
  dofn.setup()
  estimator = ManualWatermarkEstimator(None)
  checkpoint, read, last_read = StreamCheckpoint(), [], time.monotonic()
  while time.monotonic() - last_read < quiet_s:
    tracker = ThreadsafeRestrictionTracker(CheckpointTracker(checkpoint))
    got = list(dofn.process('', tracker=RestrictionTrackerView(tracker), watermark=estimator))
    read.extend(got)
    checkpoint = tracker.deferred_status()[0]
    last_read = time.monotonic() if got else last_read
    time.sleep(0.1)
  return estimator.current_watermark().micros, read


def test_a_quiet_live_stream_lets_its_last_events_pass_the_watermark(kinesis, kinesis_endpoint):
  """Live records (event time = put time), then nothing: the watermark follows the
  clock past the newest event, so its session can end without another record."""
  create_stream(kinesis, 'quiet-live', 1)
  now_s = time.time()
  put(kinesis, 'quiet-live', [json.dumps({'event_time': now_s}).encode()])
  watermark_us, read = watermark_once_idle(kinesis_endpoint, 'quiet-live')
  assert len(read) == 1
  # Held at the newest event less the 1 s bound, it stayed below this.
  assert watermark_us > read[0].timestamp.micros


def test_a_quiet_replay_of_history_holds_the_watermark_at_its_newest_event(
  kinesis, kinesis_endpoint
):
  """History put into a stream (events a year old), then nothing: the next records
  may carry on where these stopped, so the watermark stays at the newest event less
  the out-of-order bound, however long it is quiet."""
  create_stream(kinesis, 'quiet-replay', 1)
  year_ago_s = time.time() - 365 * 86_400
  put(
    kinesis, 'quiet-replay', [json.dumps({'event_time': year_ago_s + n}).encode() for n in (0, 5)]
  )
  watermark_us, read = watermark_once_idle(kinesis_endpoint, 'quiet-replay')
  newest_us = max(r.timestamp.micros for r in read)
  assert len(read) == 2
  assert watermark_us == newest_us - 1_000_000


def test_the_tracker_reports_records_read_as_progress_until_it_stops():
  """Runners ask for progress mid-bundle (Prism does; NotImplementedError failed its run)."""
  tracker = CheckpointTracker(StreamCheckpoint())
  assert tracker.try_claim(_Claim('shard-0', position=('1', 0)))
  assert tracker.try_claim(_Claim('shard-0', position=('2', 0)))
  progress = tracker.current_progress()
  assert (progress.completed_work, progress.remaining_work) == (2, 1)
  assert tracker.try_claim(_Claim('', stop=True))
  assert tracker.current_progress().remaining_work == 0
