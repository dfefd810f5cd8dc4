"""Streaming throughput and event-to-table time against kinesis-local or Kafka (a command,
not a test).

    python benchmarks/streaming_throughput.py --events 5000 --shards 2
    python benchmarks/streaming_throughput.py --kafka --events 5000 --shards 2
    python benchmarks/streaming_throughput.py --flink --parallelism 2 --shards 4

Generates a sample, puts its clickstream into a fresh stream of kinesis-local
with `shopstream kinesis put` (with --kafka: a topic of --shards partitions on
a local broker, with `shopstream kafka put`), then runs the streaming pipeline
(direct_streaming.yaml, or with --flink flink_local.yaml on a local Flink
cluster of one JobManager and one TaskManager) until the stream has been idle
for --idle seconds, and reports:

- records/s through the whole pipeline (Kinesis read, parse, enrich, product
  join, dedup, sessionize, windowed Parquet), idle wait excluded; with
  --flink also the marginal rate, (records - 1) / (time - time of a run over
  a one-record stream), which leaves out job submission and harness start-up;
- event-to-table time: from the last record's arrival in Kinesis to its row
  being in the published tables. On the FnApiRunner the stages after the
  source run once the source stops, so this is the idle wait plus the time
  to process everything; on Flink rows come out when the watermark passes
  last event + session gap + allowed lateness, then the file window closes.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)

from beam_pipelines import cli  # noqa: E402
from beam_pipelines.dev.kafka_broker import running_broker  # noqa: E402
from beam_pipelines.dev.kinesis_emulator import running_emulator  # noqa: E402
from beam_pipelines.dev.local_flink import LocalFlinkCluster  # noqa: E402
from beam_pipelines.dev.sample_data import GeneratorConfig, generate  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--events', type=int, default=5000)
  parser.add_argument('--shards', type=int, default=2)
  parser.add_argument('--idle', type=float, default=2.0)
  parser.add_argument('--kafka', action='store_true', help='a Kafka topic, not kinesis-local')
  parser.add_argument('--flink', action='store_true', help='run on a local Flink cluster')
  parser.add_argument('--parallelism', type=int, default=2, help='Flink parallelism')
  args = parser.parse_args()
  os.environ.setdefault('SHOPSTREAM_PII_SALT', 'bench')  # generated input, but a stream
  with contextlib.ExitStack() as stack:
    runner = ['--runner-config', 'runner_configs/direct_streaming.yaml']
    if args.flink:
      flink = stack.enter_context(LocalFlinkCluster(task_slots=max(args.parallelism, 2)))
      runner = ['--runner-config', 'runner_configs/flink_local.yaml']
      runner += [f'--flink_master={flink.master}', f'--parallelism={args.parallelism}']
    print(json.dumps(measure(args, runner), indent=2))


@contextlib.contextmanager
def stream_service(kafka: bool):
  """The shopstream arguments that (create, put into, read) a stream of a fresh local service."""
  if kafka:
    with running_broker() as bootstrap:
      at = ['--kafka-bootstrap', bootstrap]
      yield (
        lambda name, n: ['kafka', 'create-topic', name, '--partitions', str(n), *at],
        lambda name, sources: ['kafka', 'put', name, *sources, *at],
        lambda name: ['--kafka-topic', name, *at],
      )
    return
  os.environ.setdefault('AWS_ACCESS_KEY_ID', 'bench')
  os.environ.setdefault('AWS_SECRET_ACCESS_KEY', 'bench')
  with running_emulator() as endpoint:
    at = ['--kinesis-endpoint-url', endpoint, '--region', 'us-east-1']
    yield (
      lambda name, n: ['kinesis', 'create-stream', name, '--shards', str(n), *at],
      lambda name, sources: ['kinesis', 'put', name, *sources, *at],
      lambda name: [
        '--kinesis-stream',
        name,
        '--kinesis-endpoint-url',
        endpoint,
        '--kinesis-region',
        'us-east-1',
      ],
    )


def measure(args, runner: list[str]) -> dict:
  work = tempfile.mkdtemp(prefix='shopstream-streaming-bench-')
  generate(GeneratorConfig(output_dir=f'{work}/in', events=args.events, days=1, seed=5))
  sources = [
    '--source',
    f'events-jsonl={work}/in/*.gz',
    '--source',
    f'access-log={work}/in/access.log',
  ]
  with stream_service(args.kafka) as (create, put, read):
    assert cli.main(create('bench', args.shards)) == 0
    started = time.monotonic()
    assert cli.main(put('bench', sources)) == 0
    put_s = time.monotonic() - started
    last_put = time.monotonic()
    run_s = run_stream(args, runner, read('bench'), f'{work}/out')
    published = time.monotonic()
    one_record = {}  # with --flink: the fixed cost of a run
    if args.flink:
      assert cli.main(create('one', 1)) == 0
      with open(f'{work}/one.jsonl', 'w') as f:
        f.write(
          '{"event_type": "page_view", "event_time": "2026-03-01T00:00:00Z", "anonymous_id": "a"}\n'
        )
      assert cli.main(put('one', ['--source', f'events-jsonl={work}/one.jsonl'])) == 0
      one_record['one_record_run_seconds'] = round(
        run_stream(args, runner, read('one'), f'{work}/one'), 1
      )
  with open(f'{work}/out/_summary.json') as f:
    summary = json.load(f)
  records = summary['totals']['read']
  figures = {
    'runner': runner,
    'stream': 'kafka' if args.kafka else 'kinesis',
    'events_generated': args.events,
    'stream_records': records,
    'shards_or_partitions': args.shards,
    'put_records_per_s': round(records / put_s),
    'pipeline_seconds': round(run_s, 1),
    'pipeline_records_per_s': round(records / max(run_s - args.idle, 1e-9)),
    'pipeline_records_per_s_per_shard': round(records / max(run_s - args.idle, 1e-9) / args.shards),
    'last_arrival_to_table_s': round(published - last_put, 1),
    'files': len(glob.glob(f'{work}/out/*/*/*.parquet')),
    **one_record,
  }
  if args.flink:
    marginal_s = run_s - figures['one_record_run_seconds']
    figures['marginal_records_per_s'] = round((records - 1) / max(marginal_s, 1e-9))
    figures['marginal_records_per_s_per_shard'] = round(
      figures['marginal_records_per_s'] / args.shards
    )
  return figures


def run_stream(args, runner: list[str], stream: list[str], output: str) -> float:
  """Seconds of one `shopstream run` over the stream until it has been idle."""
  run = [
    'run',
    *runner,
    *stream,
    '--stop-after-idle',
    str(args.idle),
    '--derived-tables',
    'never',
    '--progress',
    'never',
    '--reference-time',
    '2026-06-01T00:00:00Z',
    '--output',
    output,
  ]
  started = time.monotonic()
  if args.flink:
    # Its own process, as a user runs it: the FlinkRunner's job server and
    # LOOPBACK workers outlive a run inside this one.
    command = [sys.executable, '-m', 'beam_pipelines.cli', *run]
    subprocess.run(command, cwd=PROJECT, check=True, capture_output=True)
  else:
    assert cli.main(run) == 0
  return time.monotonic() - started


if __name__ == '__main__':
  main()
