"""The ``shopstream`` command: run pipelines and generate sample data (its arguments:
arguments.py).

    shopstream generate --output sample/ --events 50000
    shopstream run --runner-config runner_configs/direct.yaml \\
        --source events-jsonl='sample/events-*.jsonl.gz' \\
        --source access-log=sample/access.log --output out/
    shopstream backfill --from 2026-03-01 --to 2026-03-03 --source ... --output out/
    shopstream deploy emr --bucket B --create-cluster --stream clicks --dry-run

Exit codes: 0 done, 2 bad arguments or configuration, 1 the run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Optional

_LOGGER = logging.getLogger(__name__)


def _quiet_known_noise(record: logging.LogRecord) -> bool:
  # Every Beam import warns that the (unused) GCP apitools are missing.
  return 'apitools not found' not in record.getMessage()


logging.getLogger().addFilter(_quiet_known_noise)

from beam_pipelines.cli.arguments import build_parser  # noqa: E402
from beam_pipelines.pipelines import runner_config  # noqa: E402  (after the filter: imports Beam)

EXIT_BAD_ARGUMENTS = 2
EXIT_FAILED = 1


def _kafka(args: argparse.Namespace) -> int:
  from beam_pipelines.io import event_replay, kafka_topics

  if args.kafka_command == 'create-topic':
    kafka_topics.create_topic(args.kafka_bootstrap, args.name, args.partitions)
    print(f'topic {args.name}: {args.partitions} partition(s)')
    return 0
  if args.kafka_command == 'offsets':
    from beam_pipelines.io.kafka_offsets import committed_offsets

    group = args.kafka_group or f'shopstream-{args.name}'
    committed = committed_offsets(args.kafka_bootstrap, args.name, group)
    ends = kafka_topics.end_offsets(args.kafka_bootstrap, args.name)
    print(f'topic {args.name}, group {group}:')
    for partition, end in sorted(ends.items()):
      done = committed.get(partition)
      behind = end - done if done is not None else end
      shown = '-' if done is None else f'{done:,}'
      print(f'  partition {partition}: committed {shown}, end {end:,}, behind {behind:,}')
    return 0
  counts: Counter = Counter()
  events = event_replay.events_in_time_order(
    args.source, _put_pseudonymizer(args.source), int(time.time() * 1_000_000), counts
  )
  sent = kafka_topics.put_events(args.kafka_bootstrap, args.name, events)
  print(
    f'topic {args.name}: {sent:,} events put; not sent: {counts["filtered"]:,} filtered, '
    f'{counts["dead_letter"]:,} unusable (the batch path dead-letters them)'
  )
  return 0


def _put_pseudonymizer(sources: list[str]):
  """The Pseudonymizer of a put: as a batch run over the same sources would have it."""
  from beam_pipelines.io.sources import expand_inputs, parse_source_spec, pseudonymizer_for

  return pseudonymizer_for(expand_inputs([parse_source_spec(s) for s in sources]))


def _dev(args: argparse.Namespace) -> int:
  from beam_pipelines.dev import kafka_broker

  return kafka_broker.serve(args.port, args.data_dir)


def _kinesis(args: argparse.Namespace) -> int:
  import boto3
  from botocore.exceptions import NoRegionError

  from beam_pipelines.io import event_replay, kinesis_replay

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
  events = event_replay.events_in_time_order(
    args.source, _put_pseudonymizer(args.source), now_us, counts
  )
  sent = kinesis_replay.put_events(client, args.name, iter(events))
  print(
    f'stream {args.name}: {sent:,} events put; not sent: {counts["filtered"]:,} filtered, '
    f'{counts["dead_letter"]:,} unusable (the batch path dead-letters them)'
  )
  return 0


# Arguments of the subcommands that are not pipeline options.
_COMMAND_ARGUMENTS = frozenset(
  {
    'command',
    'verbose',
    'runner_config',
    'source',
    'first_day',
    'last_day',
    'dry_run',
    'parallel',
    'state_dir',
  }
)


def _pipeline_flags(args: argparse.Namespace) -> list[str]:
  """The runner config's flags, then the shopstream options given on the command line."""
  flags = runner_config.load_runner_config(args.runner_config)
  flags += [f'--source={value}' for value in args.source or ()]
  for name, value in vars(args).items():
    if name in _COMMAND_ARGUMENTS or value is None:
      continue
    flags.append(f'--{name}={value}')
  return flags


def _backfill(args: argparse.Namespace, beam_args: list[str]) -> int:
  from beam_pipelines.io.sources import expand_inputs, parse_source_spec
  from beam_pipelines.pipelines import backfill

  if args.day or args.run_id or args.kinesis_stream or args.kafka_topic:
    raise ValueError(
      'backfill sets --day and --run-id itself, and reads no --kinesis-stream or --kafka-topic'
    )
  if not args.source:
    raise ValueError('at least one --source KIND=PATH_OR_GLOB is needed')
  if not args.output:
    raise ValueError('--output DIR is needed')
  remote = '://' in args.output
  if remote and not args.state_dir:
    raise ValueError(
      f'--output {args.output} is not local: give --state-dir DIR, a local folder for the '
      "backfill's manifest and lock (they rely on atomic local files)"
    )
  state = args.state_dir or backfill.default_state_dir(args.output)
  if not remote and os.path.exists(args.output) and not os.path.isdir(args.output):
    raise ValueError(f'--output {args.output} exists and is not a directory')
  if args.parallel < 1:
    raise ValueError('--parallel must be at least 1')
  days = backfill.day_range(args.first_day, args.last_day)
  files = expand_inputs([parse_source_spec(text) for text in args.source])
  manifest = backfill.read_manifest(state)
  # One "now" for the whole backfill, kept for resumes: days must agree on
  # which events are in the future.
  args.reference_time = (
    args.reference_time
    or manifest.get('reference_time')
    or dt.datetime.now(dt.UTC).isoformat(timespec='seconds')
  )
  flags = _pipeline_flags(args) + beam_args
  inputs = backfill.day_inputs(days, files, flags, manifest)
  plans = backfill.plan_days(days, manifest, inputs.fingerprints)
  if args.dry_run:
    sys.stdout.write(''.join(backfill.describe_plan(plans, inputs.files, args.output)))
    return 0
  lock = backfill.acquire_lock(state)
  try:
    manifest = backfill.read_manifest(state)  # again, now that it is ours
    backfill.remove_leftover_staging(args.output)
    plans = backfill.plan_days(days, manifest, inputs.fingerprints)
    manifest['reference_time'] = args.reference_time
    manifest['spans'] = {key: list(span) for key, span in inputs.spans.items()}
    todo = [plan.day for plan in plans if plan.action == 'run']
    for plan in plans:
      if plan.action == 'skip':
        print(f'{plan.day} skipped: done, inputs unchanged')
    bar = backfill.progress_bar(len(todo), args.progress == 'auto')
    events = [0]

    def report(result) -> None:
      if result.error:
        line = f'{result.day} FAILED: {result.error}'
      else:
        tables = result.summary['tables']
        events[0] += tables.get('events', 0)
        line = (
          f'{result.day} done in {result.seconds:.1f} s: {tables.get("events", 0):,} events, '
          f'{tables.get("sessions", 0):,} sessions, {tables.get("orders", 0):,} orders, '
          f'{tables.get("dead_letter", 0):,} dead letters'
        )
      if bar is not None:
        bar.set_postfix(events=f'{events[0]:,}')
        bar.update(1)
        bar.write(line)
      else:
        print(line, flush=True)

    results = backfill.execute(
      args.output, state, todo, inputs.flags, inputs.fingerprints, args.parallel, manifest, report
    )
    if bar is not None:
      bar.close()
  finally:
    os.remove(lock)
  failed = [r.day for r in results if r.error]
  if not failed and args.derived_tables != 'never':
    _derive(flags, args.output)
  print(
    f'backfill {days[0]}..{days[-1]}: {len(results) - len(failed)} day(s) run, '
    f'{len(days) - len(todo)} skipped, {len(failed)} failed'
    + (f' ({", ".join(failed)}); run the same command again to retry them' if failed else '')
  )
  return EXIT_FAILED if failed else 0


def _deploy(args: argparse.Namespace) -> int:
  from beam_pipelines.cli import deploy_emr

  config = deploy_emr.DeployConfig(
    bucket=args.bucket,
    region=args.region,
    cluster_id=args.cluster_id,
    create_cluster=args.create_cluster,
    release=args.release,
    instance_type=args.instance_type,
    core_nodes=args.core_nodes,
    stream=args.stream,
    dimension=tuple(args.dimension),
    backfill_from=args.backfill_from,
    backfill_to=args.backfill_to,
    backfill_sources=tuple(args.backfill_source),
    endpoint_url=args.endpoint_url,
    pii_salt_secret=args.pii_salt_secret,
    iceberg=args.iceberg,
  )
  actions = deploy_emr.plan(config, args.wheel)
  if args.dry_run:
    sys.stdout.write(deploy_emr.describe(actions))
    return 0
  state = deploy_emr.execute(actions)
  cluster = state.get('cluster_id') or args.cluster_id
  print(f'cluster {cluster}: steps {", ".join(state["step_ids"])} added')
  return 0


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
  streaming = bool(args.kinesis_stream or args.kafka_topic)
  if not args.source and not streaming:
    raise ValueError(
      'at least one --source KIND=PATH_OR_GLOB (or --kinesis-stream NAME, or --kafka-topic '
      'TOPIC) is needed'
    )
  if not args.output:
    raise ValueError('--output DIR is needed')
  if os.path.exists(args.output) and not os.path.isdir(args.output):
    raise ValueError(f'--output {args.output} exists and is not a directory')
  flags = _pipeline_flags(args)
  # A stream is not locked: it runs for days and only adds files.
  with contextlib.nullcontext() if streaming else _holding(args.output, 'run'):
    started = time.monotonic()
    if streaming:
      from beam_pipelines.pipelines import streaming_pipeline

      summary = streaming_pipeline.run(flags + beam_args)
    else:
      from beam_pipelines.pipelines import (
        batch_pipeline,  # Beam is slow to import: only when needed.
      )

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
    from beam_pipelines.io import table_store

    store = table_store.for_output(args.output)
    if store.table_format == table_store.ICEBERG:
      print(
        f'Iceberg tables {store.namespace}.{{{written}}} in catalog {store.catalog_name}, '
        f'data under {where.rstrip("/")}/<table>/'
      )
    else:
      print(f'Tables: {where.rstrip("/")}/{{{written}}}/dt=YYYY-MM-DD/')
    if args.derived_tables != 'never':
      _derive(flags + beam_args, args.output)
  return 0


@contextlib.contextmanager
def _holding(output: str, command: str) -> Iterator[None]:
  """Holds the output's lock (``_backfill/lock``) while ``command`` rewrites it.

  Batch runs, backfills and replays all replace whole partitions, so no two
  of them may work on one output at once. Remote outputs have no local state
  folder to lock: as for backfills, their runs must not overlap by
  arrangement. The folders made for the lock go again unless the run filled them.
  """
  from beam_pipelines.pipelines import backfill

  if '://' in output:
    yield
    return
  state = backfill.default_state_dir(output)
  created = [d for d in (output, state) if not os.path.exists(d)]
  lock = backfill.acquire_lock(state, command)
  try:
    yield
  finally:
    os.remove(lock)
    for directory in reversed(created):
      with contextlib.suppress(OSError):
        os.rmdir(directory)


def _derive(flags: list[str], output: str) -> None:
  """Derives the recommendation and retention tables from what is in ``output``."""
  from beam_pipelines.pipelines import derived_pipeline

  started = time.monotonic()
  counts = derived_pipeline.run(flags)
  where = output if '://' in output else os.path.abspath(output)
  print(
    f'Derived in {time.monotonic() - started:.1f} s: '
    + ', '.join(f'{name} {rows:,}' for name, rows in counts.items())
    + f' ({where.rstrip("/")}/<table>/)'
  )


def _replay(args: argparse.Namespace, beam_args: list[str]) -> int:
  from beam_pipelines.pipelines import replay

  for day in (args.first_day, args.last_day):
    if day is not None:
      try:
        dt.date.fromisoformat(day)
      except ValueError:
        raise ValueError(f'--from/--to {day!r} is not a date YYYY-MM-DD') from None
  if not os.path.isdir(os.path.join(args.output, 'dead_letter')):
    raise ValueError(f'--output {args.output} has no dead_letter table')
  flags = runner_config.load_runner_config(args.runner_config) + [f'--output={args.output}']
  flags += [f'--source={spec}' for spec in args.source]
  for name in (
    'reference_time',
    'orders_timezone',
    'default_currency',
    'fixed_layout',
    'fixed_encoding',
  ):
    if getattr(args, name):
      flags.append(f'--{name}={getattr(args, name)}')
  if args.dry_run:
    report = replay.run(flags + beam_args, args.reason, args.first_day, args.last_day, True)
    print(report.pop('plan'), end='')
    print('dry run: nothing changed')
    return 0
  with _holding(args.output, 'replay'):
    report = replay.run(flags + beam_args, args.reason, args.first_day, args.last_day, False)
    print(report.pop('plan'), end='')
    print(json.dumps(report, indent=2))
    if report['replayed'] and report.get('clean'):
      _derive(flags + beam_args, args.output)
  return 0


def _derive_command(args: argparse.Namespace, beam_args: list[str]) -> int:
  if not args.output:
    raise ValueError('--output DIR is needed')
  flags = runner_config.load_runner_config(args.runner_config) + [f'--output={args.output}']
  for name in ('interaction_weights', 'max_session_items', 'as_of'):
    if getattr(args, name) is not None:
      flags.append(f'--{name}={getattr(args, name)}')
  _derive(flags + beam_args, args.output)
  return 0


def _generate(args: argparse.Namespace) -> int:
  from beam_pipelines.dev.sample_data import GeneratorConfig, generate

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
  parser = build_parser()
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
  if args.command not in ('run', 'backfill', 'derive', 'replay') and extra:
    parser.error(f'unrecognized arguments: {" ".join(extra)}')
  try:
    if args.command == 'run':
      return _run(args, extra)
    if args.command == 'backfill':
      return _backfill(args, extra)
    if args.command == 'deploy':
      return _deploy(args)
    if args.command == 'derive':
      return _derive_command(args, extra)
    if args.command == 'replay':
      return _replay(args, extra)
    if args.command == 'report':
      from beam_pipelines.cli.report import write_report

      print(f'Report: {os.path.abspath(write_report(args.output))}')
      return 0
    if args.command == 'kinesis':
      return _kinesis(args)
    if args.command == 'kafka':
      return _kafka(args)
    if args.command == 'dev':
      return _dev(args)
    return _generate(args)
  except ValueError as e:
    print(f'shopstream {args.command}: error: {e}', file=sys.stderr)
    return EXIT_BAD_ARGUMENTS
  except Exception as e:  # the run itself failed: say so briefly, details in the log
    _LOGGER.exception('run failed')
    print(f'shopstream {args.command}: failed: {e}', file=sys.stderr)
    return EXIT_FAILED
