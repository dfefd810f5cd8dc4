"""ShopstreamOptions: the one PipelineOptions class of every shopstream pipeline.

Runner YAML files (runner_configs/) and the CLI both expand into these flags;
each flag also accepts its underscore spelling, the form YAML keys use.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Optional

from apache_beam.options.pipeline_options import (
  DirectOptions,
  FlinkRunnerOptions,
  PipelineOptions,
  PortableOptions,
  StandardOptions,
)

from beam_pipelines.io.kafka_topics import DEFAULT_BOOTSTRAP
from transforms.sessions.sessionize import DEFAULT_GAP_S, DEFAULT_MAX_DURATION_S

# A bucket is the unit of work after a batch shuffle: a few per worker even
# out unequal buckets; 16 at least keep each bucket's table a few MB at 1M
# events on one machine (peak RSS 672 MB there, 1.18 GB with 4 buckets).
BUCKETS_PER_WORKER = 4
MIN_BUCKETS = 16
# A small input gets fewer: each bucket costs a split, a batch and a call per
# shuffle whatever its size, and 16 buckets instead of 4 or 8 cost a 100k-event
# run 0.3 s (measured). One bucket per this much input, down to
# BUCKETS_PER_WORKER per worker; a 1M-event input (358 MB) keeps 16.
INPUT_BYTES_PER_BUCKET = 16 << 20


def bucket_count(options: PipelineOptions, input_bytes: Optional[int] = None) -> int:
  """--num-buckets, or BUCKETS_PER_WORKER per parallel worker of the runner (the Flink
  parallelism, or the DirectRunner's workers), at least MIN_BUCKETS; with the input's
  (uncompressed) size known, one per INPUT_BYTES_PER_BUCKET of it within those bounds."""
  given = options.view_as(ShopstreamOptions).num_buckets
  if given is not None:
    return given
  workers = max(
    options.view_as(FlinkRunnerOptions).parallelism or 1,
    options.view_as(DirectOptions).direct_num_workers or 1,
    1,
  )
  most = max(MIN_BUCKETS, BUCKETS_PER_WORKER * workers)
  if input_bytes is None:
    return most
  by_size = -(-input_bytes // INPUT_BYTES_PER_BUCKET)
  return max(BUCKETS_PER_WORKER * workers, min(most, by_size))


# The DirectRunner's in-process batch engine (direct.yaml). Beam 2.62 knows it
# only by its full name (later versions also as 'FnApiRunner').
IN_PROCESS_RUNNER = 'apache_beam.runners.portability.fn_api_runner.FnApiRunner'


def worker_threads(options: PipelineOptions) -> int:
  """--worker-threads, or else every core (at most 4) when the runner runs in this one
  process, one where the runner has parallel workers of its own (measured at 1M
  events on 2 cores: two parsing threads in each of two worker processes made
  the run 17% slower)."""
  given = options.view_as(ShopstreamOptions).worker_threads
  if given is not None:
    return given
  direct = options.view_as(DirectOptions)
  runner = options.view_as(StandardOptions).runner
  in_process = (
    runner == IN_PROCESS_RUNNER
    and (direct.direct_num_workers or 1) == 1
    and direct.direct_running_mode in (None, 'in_memory')
  )
  return min(4, len(os.sched_getaffinity(0))) if in_process else 1


def _positive_float(text: str) -> float:
  value = float(text)
  if not value > 0:
    raise ValueError(f'must be positive, got {text}')
  return value


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise ValueError(f'must be at least 1, got {text}')
  return value


def _iso_day(text: str) -> str:
  try:
    return dt.date.fromisoformat(text).isoformat()
  except ValueError:
    raise ValueError(f'{text!r} is not a date YYYY-MM-DD') from None


class ShopstreamOptions(PipelineOptions):
  @classmethod
  def _add_argparse_args(cls, parser):
    def flag(name: str, **kwargs):
      spellings = dict.fromkeys([f'--{name}', f'--{name.replace("-", "_")}'])
      parser.add_argument(*spellings, dest=name.replace('-', '_'), **kwargs)

    flag(
      'source',
      action='append',
      default=None,
      metavar='KIND=PATH_OR_GLOB',
      help='An input: kind events-jsonl (JSON lines, optionally .gz), access-log '
      '(Apache/NGINX combined), orders-csv, orders-fixed (with --fixed-layout), '
      'catalog-csv or taxonomy. Repeat for several inputs; globs allowed.',
    )
    flag(
      'output',
      default=None,
      metavar='DIR',
      help="Where the tables go: a local path or s3://bucket/prefix (with Beam's --s3_* "
      'options for the endpoint; credentials from the standard AWS chain). '
      'Partitions a run writes are replaced whole.',
    )
    flag(
      'session-gap-minutes',
      type=_positive_float,
      default=DEFAULT_GAP_S / 60,
      help='Inactivity that starts a new session (default: %(default)s).',
    )
    flag(
      'max-session-hours',
      type=_positive_float,
      default=DEFAULT_MAX_DURATION_S / 3600,
      help='A session is cut when it reaches this length (default: %(default)s).',
    )
    flag(
      'default-currency',
      default='EUR',
      metavar='ISO4217',
      help='Currency of prices that come without one (default: %(default)s).',
    )
    flag(
      'orders-timezone',
      default='UTC',
      metavar='TZ',
      help='Time zone of the local times in order exports, e.g. Europe/London '
      '(default: %(default)s).',
    )
    flag(
      'fixed-layout',
      default=None,
      metavar='LAYOUT.yaml',
      help='Column layout of orders-fixed inputs (see samples/orders-fixed/layout.yaml).',
    )
    flag(
      'fixed-encoding',
      default=None,
      metavar='CODEPAGE',
      help="Code page of orders-fixed inputs, e.g. cp037 (EBCDIC); overrides the layout's "
      "(default: the layout's, else cp1252).",
    )
    flag(
      'site-host',
      default=None,
      metavar='HOST',
      help="Your shop's host name: referrers from it count as internal, not referral.",
    )
    flag(
      'num-buckets',
      type=_positive_int,
      default=None,
      help='Hash buckets of the batch shuffles; the unit of parallelism after them '
      f'(default: one per {INPUT_BYTES_PER_BUCKET >> 20} MiB of uncompressed input, from '
      f'{BUCKETS_PER_WORKER} per parallel worker up to the larger of {MIN_BUCKETS} and '
      f'{BUCKETS_PER_WORKER} per worker).',
    )
    flag(
      'worker-threads',
      type=_positive_int,
      default=None,
      help='Threads that parse chunks and deduplicate and sessionize buckets in each worker '
      '(default: every core, at most 4, when the runner is the in-process FnApiRunner; '
      'else 1, the runner being parallel).',
    )
    flag(
      'table-format',
      default=None,
      choices=('parquet', 'iceberg'),
      help='How batch runs publish the tables: Hive-partitioned Parquet folders, or Apache '
      'Iceberg tables (one atomic commit per table, so readers never see a half-replaced '
      "partition; catalog from pyiceberg's configuration, see --iceberg-catalog). Default: "
      'what the output holds (its _table_format.json), else parquet.',
    )
    flag(
      'iceberg-catalog',
      default=None,
      metavar='NAME',
      help="The pyiceberg catalog of --table-format iceberg, configured in pyiceberg's "
      'way (PYICEBERG_CATALOG__NAME__TYPE=glue, ... or ~/.pyiceberg.yaml); a local output '
      'with none configured gets SQLite in OUTPUT/_iceberg_catalog.db (default: shopstream).',
    )
    flag(
      'iceberg-namespace',
      default=None,
      metavar='NAMESPACE',
      help='The catalog namespace (Glue database) of the Iceberg tables (default: shopstream).',
    )
    flag(
      'run-id', default=None, help="Names the run's staging area (default: time + random suffix)."
    )
    flag(
      'reference-time',
      default=None,
      metavar='ISO8601',
      help='"Now" for rejecting future timestamps (default: the wall clock). Set it '
      'to reproduce a run exactly.',
    )
    flag(
      'progress',
      default='auto',
      choices=('auto', 'never'),
      help='Progress bars on a terminal (default: %(default)s).',
    )
    # Streaming over Kinesis (instead of --source).
    flag(
      'kinesis-stream',
      default=None,
      metavar='NAME',
      help='Read canonical JSON events from this Kinesis stream (the streaming pipeline).',
    )
    flag(
      'kinesis-endpoint-url',
      default=None,
      metavar='URL',
      help='Kinesis endpoint, e.g. a local emulator (default: AWS).',
    )
    flag(
      'kinesis-region',
      default=None,
      metavar='REGION',
      help="AWS region (default: the standard AWS chain's).",
    )
    flag(
      'kinesis-start',
      default='TRIM_HORIZON',
      choices=('TRIM_HORIZON', 'LATEST'),
      help='Where a new reader starts in each shard (default: %(default)s).',
    )
    # Streaming over Kafka (instead of --kinesis-stream).
    flag(
      'kafka-topic',
      default=None,
      metavar='TOPIC',
      help='Read canonical JSON events from this Kafka topic (the streaming pipeline).',
    )
    flag(
      'kafka-start',
      default='committed',
      choices=('committed', 'earliest', 'latest'),
      help="Where a new reader starts in each partition: the consumer group's committed "
      'offset (else the earliest), the earliest or the latest (default: %(default)s). '
      'Offsets are committed once the tables hold every record before them.',
    )
    flag(
      'kafka-group',
      default=None,
      metavar='GROUP',
      help='The consumer group whose offsets are read and committed (default: shopstream-TOPIC).',
    )
    flag(
      'kafka-bootstrap',
      default=DEFAULT_BOOTSTRAP,
      metavar='HOST:PORT',
      help='A broker of the Kafka cluster (default: %(default)s).',
    )
    flag(
      'stop-after-idle',
      type=_positive_float,
      default=None,
      metavar='SECONDS',
      help='Stop reading after this long without a record (local and test runs).',
    )
    flag(
      'max-records',
      type=_positive_int,
      default=None,
      metavar='N',
      help='Stop reading after N records (local and test runs).',
    )
    flag(
      'allowed-lateness-minutes',
      type=float,
      default=5.0,
      help='How late (event time behind the watermark) an event may arrive and still '
      'count; later ones are dead letters with reason late (default: %(default)s).',
    )
    flag(
      'dedup-hours',
      type=_positive_float,
      default=24.0,
      help='How long (event time) an event_id is remembered for deduplication '
      '(default: %(default)s).',
    )
    flag(
      'file-window-minutes',
      type=_positive_float,
      default=10.0,
      help='Streaming: rows are written per window of this length (event time), one '
      'file per window, day and file shard (default: %(default)s).',
    )
    flag(
      'file-shards',
      type=_positive_int,
      default=2,
      help='Streaming: files per window and day, the parallelism of the writes '
      '(default: %(default)s).',
    )
    flag(
      'stream-job-id',
      default=None,
      metavar='ID',
      help='Streaming: the id in the names of the files this job writes, so that another '
      "job writing into the same output never replaces this one's files (default: the "
      "submission time and 4 random hex digits). Give the old job's id when restoring it "
      'from a Flink savepoint.',
    )
    flag(
      'dimension-refresh-minutes',
      type=_positive_float,
      default=15.0,
      help='Streaming: how often the catalog and taxonomy files are checked for '
      'changes and reloaded (default: %(default)s).',
    )
    # One day of a backfill (set by `shopstream backfill`, usable alone).
    flag(
      'day',
      type=_iso_day,
      default=None,
      metavar='YYYY-MM-DD',
      help='Compute only this UTC day: its partitions of every table are replaced whole, '
      'computed from the day plus its context (see transforms/day_window.py).',
    )
    flag(
      'lookback-hours',
      type=_positive_float,
      default=None,
      help='With --day: event time read before the day (default: max session hours + '
      'the session gap).',
    )
    # The derived tables (interactions, item_pairs, session_sequences, customers).
    flag(
      'derived-tables',
      default='auto',
      choices=('auto', 'never'),
      help='Derive the recommendation and retention tables from the output at the end of a '
      'batch run or backfill (default: %(default)s).',
    )
    flag(
      'interaction-weights',
      default=None,
      metavar='TYPE=W,...',
      help='Implicit-feedback weight per interaction type in interactions.weight '
      '(default: product_view=1,add_to_cart=4,purchase=10).',
    )
    flag(
      'max-session-items',
      type=_positive_int,
      default=50,
      help='item_pairs: distinct products of a session or order that count; the rest of a '
      'very long session is ignored (default: %(default)s).',
    )
    flag(
      'as-of',
      default=None,
      metavar='ISO8601',
      help='customers: the time recency and 7/30/90-day windows count back from (default: '
      'the latest order or session end in the tables).',
    )


def parse_pipeline_options(argv: list[str]) -> PipelineOptions:
  """PipelineOptions of the flags, without the prefix match Beam 2.62 makes of --output.

  Each options class parses the flags on its own with argparse's prefix
  matching, so PortableOptions reads ``--output DIR`` as
  ``--output_executable_path DIR``; the Flink job server then writes the job
  as a jar to DIR instead of running it ("FileNotFoundException: DIR (Is a
  directory)", seen). Unless that option is given in full, it is unset.
  """
  options = PipelineOptions(argv)
  if not any(flag.startswith('--output_executable_path') for flag in argv):
    options.view_as(PortableOptions).output_executable_path = None
  return options
