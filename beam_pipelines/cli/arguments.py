"""The ``shopstream`` command's arguments: every command, option, default and help text.

commands.py runs what they ask for; ``shopstream COMMAND --help`` prints them.
"""

from __future__ import annotations

import argparse
import datetime as dt

from beam_pipelines.io.kafka_topics import DEFAULT_BOOTSTRAP
from beam_pipelines.pipelines.options import ShopstreamOptions

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


def build_parser() -> argparse.ArgumentParser:
  """The parser of every shopstream command and its arguments."""
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
