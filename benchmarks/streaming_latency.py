"""Unbounded streaming on a local Flink: backlog rate per reader and arrival-to-table latency
(a command, not a test).

    python benchmarks/streaming_latency.py --parallelism 2 --shards 4

Starts kinesis-local and a local Flink cluster (one JobManager, one
TaskManager), puts a backlog of --backlog records into a fresh stream, then
starts one unbounded job (no stop condition, as on EMR) and reports:

- backlog: records/s the job reads while it catches up, in total and per
  reader subtask (Flink REST metrics of the vertex that holds the Kinesis
  read), which shows whether parallelism P spreads the shards over P readers;
- latency: after the backlog, --rate records/s for --seconds seconds, each
  stamped with its put time as event time; for each record, the time from its
  put to the first Parquet file of `events/` that holds it (median, p95, max).

A row is final when the watermark passes its session's end + allowed
lateness, and the watermark trails the newest event by the reader's
out-of-order bound (60 s), so latency is at least 60 s + gap + lateness; the
file window adds up to its length. The benchmark uses the smallest settings
that keep the rule (30 s gap, no lateness, 15 s files) so that the figure is
the pipeline's; with the defaults (30 min gap, 5 min lateness, 10 min files)
add those. Every record has its own visitor, so each is a one-event session.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import boto3
import orjson
import pyarrow.parquet as pq

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from beam_pipelines import cli  # noqa: E402
from beam_pipelines.dev.kinesis_emulator import running_emulator  # noqa: E402
from beam_pipelines.dev.local_flink import LocalFlinkCluster  # noqa: E402

STREAM = 'latency'
READER = 'ReadKinesis'
SETTINGS = ['--session-gap-minutes', '0.5', '--allowed-lateness-minutes', '0']
SETTINGS += ['--file-window-minutes', '0.25', '--derived-tables', 'never', '--progress', 'never']


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--parallelism', type=int, default=2, help='Flink parallelism')
  parser.add_argument('--shards', type=int, default=4)
  parser.add_argument('--backlog', type=int, default=6000, help='records put before the job')
  parser.add_argument('--rate', type=float, default=20.0, help='records/s put while it runs')
  parser.add_argument('--seconds', type=float, default=120.0, help='how long to put them')
  args = parser.parse_args()
  os.environ.setdefault('AWS_ACCESS_KEY_ID', 'bench')
  os.environ.setdefault('AWS_SECRET_ACCESS_KEY', 'bench')
  os.environ.setdefault('SHOPSTREAM_PII_SALT', 'bench')
  work = tempfile.mkdtemp(prefix='shopstream-latency-bench-')
  with contextlib.ExitStack() as stack:
    endpoint = stack.enter_context(running_emulator())
    flink = stack.enter_context(LocalFlinkCluster(task_slots=max(args.parallelism, 2)))
    kinesis = boto3.client('kinesis', endpoint_url=endpoint, region_name='us-east-1')
    flags = ['--kinesis-endpoint-url', endpoint, '--region', 'us-east-1']
    assert cli.main(['kinesis', 'create-stream', STREAM, '--shards', str(args.shards), *flags]) == 0
    put_backlog(kinesis, args.backlog)
    job = start_job(flink, endpoint, args.parallelism, f'{work}/out', f'{work}/job.log')
    stack.callback(stop_job, flink, job)
    figures = {'parallelism': args.parallelism, 'shards': args.shards}
    figures['backlog'] = measure_backlog(flink, args.backlog)
    figures['latency'] = measure_latency(kinesis, f'{work}/out', args.rate, args.seconds)
  print(json.dumps(figures, indent=2))


def record(visitor: str, time_s: float) -> bytes:
  stamp = dt.datetime.fromtimestamp(time_s, dt.UTC).isoformat(timespec='milliseconds')
  return orjson.dumps(
    {'event_id': visitor, 'event_type': 'page_view', 'event_time': stamp, 'anonymous_id': visitor}
  )


def put_backlog(kinesis, count: int) -> None:
  for start in range(0, count, 500):
    now = time.time()
    entries = [
      {'Data': record(f'backlog-{n}', now), 'PartitionKey': f'backlog-{n}'}
      for n in range(start, min(start + 500, count))
    ]
    assert kinesis.put_records(StreamName=STREAM, Records=entries)['FailedRecordCount'] == 0


def start_job(flink, endpoint: str, parallelism: int, out: str, log_path: str):
  command = [sys.executable, '-m', 'beam_pipelines.cli', 'run']
  command += ['--runner-config', 'runner_configs/flink_local.yaml']
  command += [f'--flink_master={flink.master}', f'--parallelism={parallelism}']
  command += ['--kinesis-stream', STREAM, '--kinesis-endpoint-url', endpoint]
  command += ['--kinesis-region', 'us-east-1', '--output', out, *SETTINGS]
  with open(log_path, 'wb') as log:
    job = subprocess.Popen(
      command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
  wait_for(lambda: running_job(flink) is not None, 'the job to run', 180)
  return job


def stop_job(flink, job: subprocess.Popen) -> None:
  jid = running_job(flink)
  if jid:
    cancel = f'http://{flink.master}/jobs/{jid}?mode=cancel'
    urllib.request.urlopen(urllib.request.Request(cancel, method='PATCH'))
  os.killpg(job.pid, signal.SIGKILL)
  job.wait()


def running_job(flink):
  return next((j['jid'] for j in flink.jobs() if j['state'] == 'RUNNING'), None)


def reader_subtasks(flink) -> list[int]:
  """Records each subtask of the reading vertex has passed on (Flink's write-records).

  The splittable read is expanded into several steps; the one that reads is
  fused with the parse and enrich steps after it, and passes the most on.
  """
  jid = running_job(flink)
  best = []
  for vertex in (flink.rest(f'jobs/{jid}') or {}).get('vertices', []):
    if READER in vertex['name']:
      detail = flink.rest(f'jobs/{jid}/vertices/{vertex["id"]}') or {}
      counts = [s['metrics'].get('write-records', 0) for s in detail.get('subtasks', [])]
      best = max(best, counts, key=sum)
  return best


def measure_backlog(flink, count: int) -> dict:
  """Polls the reader's counts until it has passed the backlog on."""
  started = None
  timeline = []
  deadline = time.monotonic() + 900
  while time.monotonic() < deadline:
    counts = reader_subtasks(flink)
    now = time.monotonic()
    if counts and sum(counts) > 0 and started is None:
      started = now
    timeline.append((now, counts))
    if counts and sum(counts) >= count:
      break
    time.sleep(1)
  else:
    raise TimeoutError(f'the reader passed on {sum(timeline[-1][1])} of {count} records')
  # Flink's metrics lag by a few seconds; the rate is over the whole catch-up.
  seconds = timeline[-1][0] - started
  per_subtask = timeline[-1][1]
  return {
    'records': sum(per_subtask),
    'seconds_from_first_to_last': round(seconds, 1),
    'records_per_s': round(sum(per_subtask) / max(seconds, 1e-9)),
    'records_per_subtask': per_subtask,
  }


def measure_latency(kinesis, out: str, rate: float, seconds: float) -> dict:
  seen = {}
  watcher = threading.Thread(target=watch_files, args=(out, seen), daemon=True)
  watcher.start()
  put_at = {}
  count = int(rate * seconds)
  started = time.time()
  for n in range(count):
    due = started + n / rate
    time.sleep(max(0.0, due - time.time()))
    visitor = f'live-{n}'
    now = time.time()
    kinesis.put_record(StreamName=STREAM, Data=record(visitor, now), PartitionKey=visitor)
    put_at[visitor] = now
  wait_for(lambda: all(v in seen for v in put_at), 'every live record in a table', 600)
  latencies = sorted(seen[v] - put_at[v] for v in put_at)
  return {
    'records': count,
    'rate_per_s': rate,
    'median_s': round(statistics.median(latencies), 1),
    'p95_s': round(latencies[int(0.95 * (len(latencies) - 1))], 1),
    'max_s': round(latencies[-1], 1),
    'min_s': round(latencies[0], 1),
  }


def watch_files(out: str, seen: dict) -> None:
  """Notes when each event_id first appears in a Parquet file of events/."""
  read = set()
  while True:
    for path in glob.glob(f'{out}/events/dt=*/*.parquet'):
      if path not in read:
        read.add(path)
        now = time.time()
        for event_id in pq.read_table(path, columns=['event_id'])['event_id'].to_pylist():
          seen.setdefault(event_id, now)
    time.sleep(0.2)


def wait_for(condition, what: str, timeout_s: float) -> None:
  deadline = time.monotonic() + timeout_s
  while not condition():
    if time.monotonic() > deadline:
      raise TimeoutError(f'waited {timeout_s} s for {what}')
    time.sleep(0.5)


if __name__ == '__main__':
  main()
