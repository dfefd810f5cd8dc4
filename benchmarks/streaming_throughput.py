"""Streaming throughput and event-to-table time against kinesis-local (a command, not a test).

    python benchmarks/streaming_throughput.py --events 5000 --shards 2

Generates a sample, puts its clickstream into a fresh stream of kinesis-local
with `shopstream kinesis put`, then runs the streaming pipeline
(direct_streaming.yaml) until the stream has been idle for --idle seconds
and reports:

- records/s through the whole pipeline (Kinesis read, parse, enrich, product
  join, dedup, sessionize, windowed Parquet), idle wait excluded;
- event-to-table time: from the last record's arrival in Kinesis to its row
  being in the published tables. On the FnApiRunner the stages after the
  source run once the source stops, so this is the idle wait plus the time
  to process everything; on Flink rows come out when the watermark passes
  last event + session gap + allowed lateness, then the file window closes.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_pipelines import cli  # noqa: E402
from beam_pipelines.kinesis_emulator import running_emulator  # noqa: E402
from beam_pipelines.sample_data import GeneratorConfig, generate  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--events', type=int, default=5000)
  parser.add_argument('--shards', type=int, default=2)
  parser.add_argument('--idle', type=float, default=2.0)
  args = parser.parse_args()
  os.environ.setdefault('AWS_ACCESS_KEY_ID', 'bench')
  os.environ.setdefault('AWS_SECRET_ACCESS_KEY', 'bench')
  work = tempfile.mkdtemp(prefix='shopstream-streaming-bench-')
  generate(GeneratorConfig(output_dir=f'{work}/in', events=args.events, days=1, seed=5))
  sources = [
    '--source',
    f'events-jsonl={work}/in/*.gz',
    '--source',
    f'access-log={work}/in/access.log',
  ]
  with running_emulator() as endpoint:
    kinesis = ['--kinesis-endpoint-url', endpoint, '--region', 'us-east-1']
    assert (
      cli.main(['kinesis', 'create-stream', 'bench', '--shards', str(args.shards), *kinesis]) == 0
    )
    started = time.monotonic()
    assert cli.main(['kinesis', 'put', 'bench', *sources, *kinesis]) == 0
    put_s = time.monotonic() - started
    last_put = time.monotonic()
    run = [
      'run',
      '--runner-config',
      'runner_configs/direct_streaming.yaml',
      '--kinesis-stream',
      'bench',
      '--kinesis-endpoint-url',
      endpoint,
      '--kinesis-region',
      'us-east-1',
      '--stop-after-idle',
      str(args.idle),
      '--derived-tables',
      'never',
      '--progress',
      'never',
      '--reference-time',
      '2026-06-01T00:00:00Z',
      '--output',
      f'{work}/out',
    ]
    started = time.monotonic()
    assert cli.main(run) == 0
    run_s = time.monotonic() - started
    published = time.monotonic()
  with open(f'{work}/out/_summary.json') as f:
    summary = json.load(f)
  records = summary['totals']['read']
  print(
    json.dumps(
      {
        'events_generated': args.events,
        'kinesis_records': records,
        'shards': args.shards,
        'put_records_per_s': round(records / put_s),
        'pipeline_seconds': round(run_s, 1),
        'pipeline_records_per_s': round(records / max(run_s - args.idle, 1e-9)),
        'last_arrival_to_table_s': round(published - last_put, 1),
        'files': len(glob.glob(f'{work}/out/*/*/*.parquet')),
      },
      indent=2,
    )
  )


if __name__ == '__main__':
  main()
