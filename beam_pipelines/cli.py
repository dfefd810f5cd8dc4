"""The ``shopstream`` command: run pipelines and generate sample data.

    shopstream generate --output sample/ --events 50000
    shopstream run --runner-config runner_configs/direct.yaml \\
        --source events-jsonl='sample/events-*.jsonl.gz' \\
        --source access-log=sample/access.log --output out/

Exit codes: 0 done, 2 bad arguments or configuration, 1 the run failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections import Counter
from typing import Optional

_LOGGER = logging.getLogger(__name__)


def _quiet_known_noise(record: logging.LogRecord) -> bool:
  # Every Beam import warns that the (unused) GCP apitools are missing.
  return 'apitools not found' not in record.getMessage()


logging.getLogger().addFilter(_quiet_known_noise)

from beam_pipelines import runner_config  # noqa: E402  (after the filter: imports Beam)
from beam_pipelines.options import ShopstreamOptions  # noqa: E402

EXIT_BAD_ARGUMENTS = 2
EXIT_FAILED = 1

RUN_EPILOG = """\
Any Apache Beam pipeline option may follow (--runner, --direct_num_workers,
...); it overrides the runner config. The run prints the run summary and writes
it to OUTPUT/_summary.json, with the reasons of filtered and dead-lettered
records in OUTPUT/_run_metrics.json.

PII: IPs and e-mail addresses are replaced by salted hashes keyed with
$SHOPSTREAM_PII_SALT (a public default is used, with a warning, when unset).
"""


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog='shopstream',
    description='Turn raw e-commerce behaviour data into analytics-ready Parquet tables.',
  )
  parser.add_argument('-v', '--verbose', action='store_true', help='Log at INFO level.')
  commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

  run = commands.add_parser(
    'run',
    help='Run the batch pipeline over legacy exports.',
    description='Clean, deduplicate, sessionize and enrich events into the events, '
    'sessions and dead_letter tables (Hive-partitioned Parquet).',
    epilog=RUN_EPILOG,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  run.add_argument(
    '--runner-config',
    default='runner_configs/direct.yaml',
    metavar='YAML',
    help='Runner YAML from runner_configs/ (default: %(default)s).',
  )
  ShopstreamOptions._add_argparse_args(run)

  generate = commands.add_parser(
    'generate',
    help='Write realistic sample inputs (with realistic dirt).',
    description='Write sample events-jsonl files (one .jsonl.gz a day) and an access.log.',
  )
  generate.add_argument('--output', required=True, metavar='DIR', help='Directory to write to.')
  generate.add_argument(
    '--events', type=int, default=50_000, help='Events to simulate (default: %(default)s).'
  )
  generate.add_argument('--days', type=int, default=3, help='Days covered (default: %(default)s).')
  generate.add_argument(
    '--start',
    type=dt.date.fromisoformat,
    default=dt.date(2026, 3, 1),
    metavar='YYYY-MM-DD',
    help='First day (default: %(default)s).',
  )
  generate.add_argument('--seed', type=int, default=7, help='Random seed (default: %(default)s).')
  kinesis = commands.add_parser(
    'kinesis',
    help='Create a Kinesis stream, or replay exports into one.',
    description='Work with Amazon Kinesis (or a local emulator). Credentials come from the '
    'standard AWS chain only.',
  )
  kinesis_commands = kinesis.add_subparsers(dest='kinesis_command', required=True, metavar='ACTION')
  create = kinesis_commands.add_parser(
    'create-stream', help='Create a stream and wait until active.'
  )
  create.add_argument('name', help='Stream name.')
  create.add_argument('--shards', type=int, default=1, help='Shard count (default: %(default)s).')
  put = kinesis_commands.add_parser(
    'put',
    help='Replay batch sources into a stream as canonical JSON events.',
    description='Parse events-jsonl and access-log sources as the batch pipeline does and '
    'put each usable event into the stream (partition key = session key).',
  )
  put.add_argument('name', help='Stream name.')
  put.add_argument(
    '--source',
    action='append',
    required=True,
    metavar='KIND=PATH_OR_GLOB',
    help='events-jsonl or access-log input; repeatable.',
  )
  for sub in (create, put):
    sub.add_argument(
      '--kinesis-endpoint-url',
      default=None,
      metavar='URL',
      help='Endpoint of a local emulator (default: AWS).',
    )
    sub.add_argument('--region', default=None, help="AWS region (default: the AWS chain's).")
  return parser


def _kinesis(args: argparse.Namespace) -> int:
  import boto3
  from botocore.exceptions import NoRegionError

  from beam_pipelines import kinesis_replay
  from transforms.pseudonymize import Pseudonymizer, salt_from_environment

  if args.kinesis_command == 'create-stream' and args.shards < 1:
    raise ValueError('--shards must be at least 1')
  try:
    client = boto3.client(
      'kinesis', endpoint_url=args.kinesis_endpoint_url, region_name=args.region
    )
  except NoRegionError:
    raise ValueError('no AWS region: give --region or set AWS_DEFAULT_REGION') from None
  if args.kinesis_command == 'create-stream':
    client.create_stream(StreamName=args.name, ShardCount=args.shards)
    client.get_waiter('stream_exists').wait(
      StreamName=args.name, WaiterConfig={'Delay': 1, 'MaxAttempts': 120}
    )
    print(f'stream {args.name}: {args.shards} shard(s), active')
    return 0
  counts: Counter = Counter()
  now_us = int(time.time() * 1_000_000)
  events = sorted(
    kinesis_replay.replay_events(
      args.source, Pseudonymizer(salt_from_environment()), now_us, counts
    ),
    key=lambda event: (event.event_time, event.event_id),
  )
  sent = kinesis_replay.put_events(client, args.name, iter(events))
  print(
    f'stream {args.name}: {sent:,} events put; not sent: {counts["filtered"]:,} filtered, '
    f'{counts["dead_letter"]:,} unusable (the batch path dead-letters them)'
  )
  return 0


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
  from beam_pipelines import batch_pipeline  # Beam is slow to import: only when needed.

  if not args.source and not args.kinesis_stream:
    raise ValueError('at least one --source KIND=PATH_OR_GLOB (or --kinesis-stream NAME) is needed')
  if not args.output:
    raise ValueError('--output DIR is needed')
  if os.path.exists(args.output) and not os.path.isdir(args.output):
    raise ValueError(f'--output {args.output} exists and is not a directory')
  flags = runner_config.load_runner_config(args.runner_config)
  flags += [f'--source={value}' for value in args.source or ()]
  for name, value in vars(args).items():
    if name in ('command', 'verbose', 'runner_config', 'source') or value is None:
      continue
    flags.append(f'--{name}={value}')
  started = time.monotonic()
  if args.kinesis_stream:
    from beam_pipelines import streaming_pipeline

    summary = streaming_pipeline.run(flags + beam_args)
  else:
    summary = batch_pipeline.run(flags + beam_args)
  elapsed = time.monotonic() - started
  print(json.dumps(summary, indent=2))
  totals = summary['totals']
  print(
    f'\n{totals["read"]:,} records read in {elapsed:.1f} s '
    f'({totals["read"] / max(elapsed, 1e-9):,.0f}/s): {totals["clean"]:,} clean, '
    f'{totals["dead_letter"]:,} dead letters, {totals["duplicate"]:,} duplicates, '
    f'{totals["filtered"]:,} filtered.'
  )
  written = ','.join(name for name, rows in summary['tables'].items() if rows)
  where = args.output if '://' in args.output else os.path.abspath(args.output)
  print(f'Tables: {where.rstrip("/")}/{{{written}}}/dt=YYYY-MM-DD/')
  return 0


def _generate(args: argparse.Namespace) -> int:
  from beam_pipelines.sample_data import GeneratorConfig, generate

  if args.events < 1 or args.days < 1:
    raise ValueError('--events and --days must be at least 1')
  written = generate(
    GeneratorConfig(
      output_dir=args.output, events=args.events, days=args.days, start=args.start, seed=args.seed
    )
  )
  for name, lines in written.items():
    print(f'{os.path.join(args.output, name)}: {lines:,} lines')
  return 0


def main(argv: Optional[list[str]] = None) -> int:
  parser = _parser()
  args, extra = parser.parse_known_args(argv)
  # force: importing Beam already logged a warning, which configured the root logger.
  logging.basicConfig(
    level=logging.INFO if args.verbose else logging.WARNING,
    format='%(asctime)s %(levelname)s %(name)s: %(message)s',
    force=True,
  )
  logging.getLogger().addFilter(_quiet_known_noise)
  # -v is for shopstream's progress; Beam's own INFO lines are runner internals.
  logging.getLogger('apache_beam').setLevel(logging.WARNING)
  if args.command != 'run' and extra:
    parser.error(f'unrecognized arguments: {" ".join(extra)}')
  try:
    if args.command == 'run':
      return _run(args, extra)
    if args.command == 'kinesis':
      return _kinesis(args)
    return _generate(args)
  except ValueError as e:
    print(f'shopstream {args.command}: error: {e}', file=sys.stderr)
    return EXIT_BAD_ARGUMENTS
  except Exception as e:  # the run itself failed: say so briefly, details in the log
    _LOGGER.exception('run failed')
    print(f'shopstream {args.command}: failed: {e}', file=sys.stderr)
    return EXIT_FAILED


if __name__ == '__main__':
  sys.exit(main())
