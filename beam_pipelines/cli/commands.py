"""The ``shopstream`` command: run pipelines and generate sample data.

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

from beam_pipelines.io.kafka_topics import DEFAULT_BOOTSTRAP  # noqa: E402
from beam_pipelines.pipelines import runner_config  # noqa: E402  (after the filter: imports Beam)
from beam_pipelines.pipelines.options import ShopstreamOptions  # noqa: E402

EXIT_BAD_ARGUMENTS = 2
EXIT_FAILED = 1

RUN_EPILOG = """\
Any Apache Beam pipeline option may follow (--runner, --direct_num_workers,
...); it overrides the runner config. The run prints the run summary and writes
it to OUTPUT/_summary.json, with the reasons of filtered and dead-lettered
records in OUTPUT/_run_metrics.json.

PII: IPs and e-mail addresses are replaced by salted hashes keyed with
$SHOPSTREAM_PII_SALT, which every run needs (every worker too), but over samples
made by `shopstream generate`, which may use a public default.
"""


def _add_runner_config(command: argparse.ArgumentParser) -> None:
  command.add_argument(
    '--runner-config',
    default='runner_configs/direct.yaml',
    metavar='YAML',
    help='Runner YAML from runner_configs/ (default: %(default)s).',
  )


def _add_clickstream_sources(command: argparse.ArgumentParser) -> None:
  """--source of the commands that replay exports into a stream."""
  command.add_argument(
    '--source',
    action='append',
    required=True,
    metavar='KIND=PATH_OR_GLOB',
    help='events-jsonl or access-log input; repeatable.',
  )


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
  _add_runner_config(run)
  ShopstreamOptions._add_argparse_args(run)

  backfill = commands.add_parser(
    'backfill',
    help='Run the batch pipeline day by day over a date range; resumable.',
    description='Compute each UTC day from FROM to TO with the batch pipeline and replace '
    "that day's partitions of every table whole. Sessions crossing midnight come out as in "
    'one run over all the input (each day reads its context: the day before and after). '
    'State is kept in OUTPUT/_backfill/manifest.json: running the same command again skips '
    'done days whose inputs did not change and redoes the rest, e.g. after a crash.',
    epilog=RUN_EPILOG,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  backfill.add_argument(
    '--from', dest='first_day', required=True, metavar='YYYY-MM-DD', help='First day (UTC).'
  )
  backfill.add_argument(
    '--to', dest='last_day', required=True, metavar='YYYY-MM-DD', help='Last day (UTC), included.'
  )
  backfill.add_argument(
    '--dry-run',
    action='store_true',
    help='Print the plan (days, inputs, what is done); change nothing.',
  )
  backfill.add_argument(
    '--parallel',
    type=int,
    default=1,
    metavar='N',
    help='Days run at once, each in its own process (default: %(default)s).',
  )
  backfill.add_argument(
    '--state-dir',
    default=None,
    metavar='DIR',
    help='Local folder for the manifest and lock (default: OUTPUT/_backfill; needed when '
    'OUTPUT is s3://...).',
  )
  _add_runner_config(backfill)
  ShopstreamOptions._add_argparse_args(backfill)

  derive = commands.add_parser(
    'derive',
    help='Derive the recommendation and retention tables from an output folder.',
    description='Read the events, sessions, orders and order_lines tables of OUTPUT and '
    'replace interactions, item_pairs, session_sequences and customers with fresh ones. '
    '`run` and `backfill` do this at their end; schedule it for a stream.',
  )
  derive.add_argument('--output', required=True, metavar='DIR', help='The tables folder.')
  _add_runner_config(derive)
  for name, text in (
    ('interaction-weights', 'Weights per type, e.g. product_view=1,add_to_cart=4,purchase=10.'),
    ('max-session-items', 'Distinct products of a session or order that make pairs (50).'),
    ('as-of', 'customers: count recency and windows back from this time (ISO 8601).'),
  ):
    derive.add_argument(f'--{name}', default=None, help=text)

  replay = commands.add_parser(
    'replay',
    help='Re-read dead letters with the current transforms and fold the recovered events in.',
    description='Parse the clickstream and order-history dead letters of OUTPUT again (after '
    'a parser fix or a new event-type synonym). Recovered events join their days: those '
    "days' events and sessions are recomputed and replaced; recovered order lines join their "
    "orders, whose days' orders and order_lines are rebuilt. The replayed letters leave the "
    'dead_letter table, letters that still fail stay with their new reason. Accounted in '
    'OUTPUT/_replay/.',
  )
  replay.add_argument('--output', required=True, metavar='DIR', help='The tables folder.')
  replay.add_argument(
    '--reason',
    action='append',
    default=[],
    metavar='CODE',
    help='Only letters with this reason code (repeatable; default: all).',
  )
  replay.add_argument(
    '--from', dest='first_day', metavar='YYYY-MM-DD', help='First dead-letter day.'
  )
  replay.add_argument('--to', dest='last_day', metavar='YYYY-MM-DD', help='Last dead-letter day.')
  replay.add_argument('--dry-run', action='store_true', help='Print the plan; change nothing.')
  replay.add_argument(
    '--source',
    action='append',
    default=[],
    metavar='KIND=PATH',
    help='catalog-csv / taxonomy: join the product dimension into recovered events and '
    'order lines.',
  )
  # How the run that wrote the tables read orders; a replay must read them alike.
  for name, text in (
    ('orders-timezone', 'Time zone of order exports, as in the run (default: UTC).'),
    ('default-currency', 'Currency of prices without one, as in the run (default: EUR).'),
    (
      'fixed-layout',
      'Layout of orders-fixed inputs, as in the run; without it their letters are skipped.',
    ),
    ('fixed-encoding', 'Code page of orders-fixed inputs, as in the run.'),
  ):
    replay.add_argument(f'--{name}', default=None, help=text)
  _add_runner_config(replay)
  replay.add_argument(
    '--reference-time', default=None, metavar='ISO8601', help='"Now" for future timestamps.'
  )

  report = commands.add_parser(
    'report',
    help='Write a self-contained HTML report about an output folder.',
    description='Sessions per day, session length and duration, the funnel, channels and '
    "devices, top item pairs, dead letters by reason and the last run's accounting, as "
    'OUTPUT/report.html with inline SVG plots (no network needed to view it).',
  )
  report.add_argument('--output', required=True, metavar='DIR', help='The tables folder.')

  deploy = commands.add_parser(
    'deploy',
    help='Deploy the streaming job and backfills to Flink on Amazon EMR.',
    description='Build the wheel, upload it with the runner configs and bootstrap script to '
    'S3, optionally create an EMR cluster (Flink 1.19), and add steps that start a Flink YARN '
    'session, the streaming pipeline and a backfill. Credentials come from the standard AWS '
    'chain only.',
  )
  targets = deploy.add_subparsers(dest='target', required=True, metavar='TARGET')
  emr = targets.add_parser('emr', help='Amazon EMR (Flink 1.19 on EMR 7.4+).')
  emr.add_argument('--bucket', required=True, help='S3 bucket for artifacts, tables, checkpoints.')
  where = emr.add_mutually_exclusive_group(required=True)
  where.add_argument('--cluster-id', metavar='J-ID', help='A running cluster to add steps to.')
  where.add_argument('--create-cluster', action='store_true', help='Create a cluster first.')
  emr.add_argument('--region', default=None, help="AWS region (default: the AWS chain's).")
  emr.add_argument('--release', default='emr-7.4.0', help='EMR release (default: %(default)s).')
  emr.add_argument(
    '--instance-type', default='m6i.xlarge', help='Node type (default: %(default)s).'
  )
  emr.add_argument('--core-nodes', type=int, default=2, help='Core nodes (default: %(default)s).')
  emr.add_argument('--stream', metavar='NAME', help='Start the streaming job on this stream.')
  emr.add_argument(
    '--dimension',
    action='append',
    default=[],
    metavar='KIND=s3://...',
    help='catalog-csv or taxonomy input of the product dimension; repeatable.',
  )
  emr.add_argument('--backfill-from', metavar='YYYY-MM-DD', help='Also run a backfill from...')
  emr.add_argument('--backfill-to', metavar='YYYY-MM-DD', help='...to this day.')
  emr.add_argument(
    '--backfill-source',
    action='append',
    default=[],
    metavar='KIND=s3://...',
    help="The backfill's inputs; repeatable.",
  )
  emr.add_argument(
    '--pii-salt-secret',
    metavar='SECRET_ID',
    help='AWS Secrets Manager secret whose string is SHOPSTREAM_PII_SALT: the bootstrap '
    'action puts it on every node, outside the job graph (required).',
  )
  emr.add_argument(
    '--iceberg',
    action='store_true',
    help='The backfill publishes Apache Iceberg tables (catalog: AWS Glue, namespace '
    'shopstream) to s3://BUCKET/iceberg/ instead of Parquet folders in s3://BUCKET/tables/.',
  )
  emr.add_argument('--wheel', default=None, help='Use this wheel instead of building one.')
  emr.add_argument('--dry-run', action='store_true', help='Print what would be run; do nothing.')
  emr.add_argument('--endpoint-url', default=None, help=argparse.SUPPRESS)  # emulators in tests

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
  _add_clickstream_sources(put)
  for sub in (create, put):
    sub.add_argument(
      '--kinesis-endpoint-url',
      default=None,
      metavar='URL',
      help='Endpoint of a local emulator (default: AWS).',
    )
    sub.add_argument('--region', default=None, help="AWS region (default: the AWS chain's).")
  kafka = commands.add_parser(
    'kafka',
    help='Create a Kafka topic, replay exports into one, or show what a reader committed.',
    description='Work with Apache Kafka (or Amazon MSK). Security settings and credentials '
    'come from the environment: SHOPSTREAM_KAFKA_SECURITY_PROTOCOL, '
    'SHOPSTREAM_KAFKA_SASL_MECHANISM, SHOPSTREAM_KAFKA_USERNAME, SHOPSTREAM_KAFKA_PASSWORD, '
    'SHOPSTREAM_KAFKA_CA_LOCATION (README, Kafka).',
  )
  kafka_commands = kafka.add_subparsers(dest='kafka_command', required=True, metavar='ACTION')
  create_topic = kafka_commands.add_parser('create-topic', help='Create a topic.')
  create_topic.add_argument('name', help='Topic name.')
  create_topic.add_argument(
    '--partitions', type=int, default=1, help='Partition count (default: %(default)s).'
  )
  put_topic = kafka_commands.add_parser(
    'put',
    help='Replay batch sources into a topic as canonical JSON events.',
    description='Parse events-jsonl and access-log sources as the batch pipeline does and '
    'produce each usable event to the topic (key = session key).',
  )
  put_topic.add_argument('name', help='Topic name.')
  _add_clickstream_sources(put_topic)
  offsets = kafka_commands.add_parser(
    'offsets',
    help="Show a consumer group's committed offsets and how far each partition is behind.",
    description='Per partition: the offset the streaming run committed (the tables hold every '
    'record before it), the end of the partition, and the records in between.',
  )
  offsets.add_argument('name', help='Topic name.')
  offsets.add_argument(
    '--kafka-group',
    default=None,
    metavar='GROUP',
    help='Consumer group (default: shopstream-TOPIC).',
  )
  for sub in (create_topic, put_topic, offsets):
    sub.add_argument(
      '--kafka-bootstrap',
      default=DEFAULT_BOOTSTRAP,
      metavar='HOST:PORT',
      help='A broker of the cluster (default: %(default)s).',
    )
  dev = commands.add_parser(
    'dev', help='Local services to try shopstream with.', description='Local services.'
  )
  dev_services = dev.add_subparsers(dest='service', required=True, metavar='SERVICE')
  dev_kafka = dev_services.add_parser(
    'kafka',
    help='Run a one-node Kafka broker in the foreground until Ctrl-C or SIGTERM.',
    description='Apache Kafka in KRaft mode, one node, on 127.0.0.1 (from `make install`).',
  )
  dev_kafka.add_argument(
    '--port', type=int, default=9092, help='Its client port (default: %(default)s).'
  )
  dev_kafka.add_argument(
    '--data-dir',
    default=None,
    metavar='DIR',
    help='Keep topics and offsets here across restarts (default: a temporary directory).',
  )
  return parser


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
