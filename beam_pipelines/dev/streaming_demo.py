"""The streaming half of `make demo`: the same sample through Kinesis, checked against batch.

Starts kinesis-local, generates a small sample, runs the batch pipeline on
it, replays it into a stream with `shopstream kinesis put`, runs the
streaming pipeline until the stream is idle, and prints whether the events
and sessions tables of both runs, and the tables derived from them, are
equal.

    python -m beam_pipelines.dev.streaming_demo --workdir demo/streaming
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import pyarrow.dataset as ds

from beam_pipelines import cli
from beam_pipelines.dev.kinesis_emulator import running_emulator
from beam_pipelines.dev.sample_data import GeneratorConfig, generate

COMMON = ['--progress', 'never', '--reference-time', '2026-06-01T00:00:00Z']


def table_rows(path: str, drop: tuple[str, ...]) -> list[tuple]:
  table = ds.dataset(path, format='parquet', partitioning='hive').to_table()
  table = table.drop_columns([c for c in drop if c in table.column_names])
  return sorted(tuple(row.values()) for row in table.to_pylist())


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', default='demo/streaming')
  parser.add_argument('--events', type=int, default=5000)
  args = parser.parse_args(argv)
  shutil.rmtree(args.workdir, ignore_errors=True)
  inputs = os.path.join(args.workdir, 'sample')
  generate(GeneratorConfig(output_dir=inputs, events=args.events, days=1, seed=3))
  sources = [
    '--source',
    f'events-jsonl={inputs}/*.jsonl.gz',
    '--source',
    f'access-log={inputs}/access.log',
  ]
  products = [
    '--source',
    f'catalog-csv={inputs}/catalog.csv',
    '--source',
    f'taxonomy={inputs}/taxonomy.txt',
  ]
  batch, stream = os.path.join(args.workdir, 'batch'), os.path.join(args.workdir, 'stream')
  print('== batch run')
  if cli.main(['run', *sources, *products, '--output', batch, *COMMON]):
    return 1
  # The emulator takes any credentials; real AWS ones come from the standard chain.
  os.environ.setdefault('AWS_ACCESS_KEY_ID', 'local')
  os.environ.setdefault('AWS_SECRET_ACCESS_KEY', 'local')
  with running_emulator() as endpoint:
    print(f'== kinesis-local at {endpoint}')
    kinesis = ['--kinesis-endpoint-url', endpoint, '--region', 'us-east-1']
    if cli.main(['kinesis', 'create-stream', 'demo', '--shards', '2', *kinesis]) or cli.main(
      ['kinesis', 'put', 'demo', *sources, *kinesis]
    ):
      return 1
    print('== streaming run (until the stream is idle for 3 s)')
    if cli.main(
      [
        'run',
        '--runner-config',
        'runner_configs/direct_streaming.yaml',
        '--kinesis-stream',
        'demo',
        '--kinesis-endpoint-url',
        endpoint,
        '--kinesis-region',
        'us-east-1',
        '--stop-after-idle',
        '3',
        *products,
        '--output',
        stream,
        *COMMON,
      ]
    ):
      return 1
  equal = True
  compared = (
    ('events', ('dt',)),
    ('sessions', ('dt',)),
    # The derived tables: each run derived them from what it wrote.
    ('session_sequences', ('dt',)),
    ('interactions', ()),
    ('item_pairs', ()),
    ('customers', ()),
  )
  for table, drop in compared:
    same = table_rows(f'{batch}/{table}', drop) == table_rows(f'{stream}/{table}', drop)
    equal &= same
    rows = len(table_rows(f'{stream}/{table}', drop))
    print(
      f'{table}: streaming {"equals" if same else "DIFFERS FROM"} batch ({rows:,} rows; all columns)'
    )
  return 0 if equal else 1


if __name__ == '__main__':
  sys.exit(main())
