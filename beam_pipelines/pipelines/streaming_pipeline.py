"""The streaming pipeline: Kinesis -> the same parse and enrich transforms as batch ->
event-time dedup and sessionization -> Parquet, with late events as dead letters.

    shopstream run --runner-config runner_configs/direct_streaming.yaml \\
      --kinesis-stream clicks --kinesis-endpoint-url http://127.0.0.1:4568 \\
      --source catalog-csv=catalog.csv --source taxonomy=taxonomy.txt \\
      --output out/ --stop-after-idle 10

Locally (FnApiRunner) the source runs until its stop condition and the
stages after it run then; on Flink it runs continuously. Rows are emitted
once, when final (see transforms/sessions/streaming.py), and written in windowed
files whose names a retry reproduces (see streaming_sink.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Optional

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.io import table_store, tables
from beam_pipelines.io.dimension_refresh import RefreshingProductJoin
from beam_pipelines.io.kafka import KafkaConfig, KafkaRecord, ReadFromKafka
from beam_pipelines.io.kafka_offsets import CommitOffsets, commit_hold_s
from beam_pipelines.io.kinesis import KinesisConfig, KinesisRecord, ReadFromKinesis
from beam_pipelines.io.sources import (
  CATALOG_CSV,
  CHUNK_BYTES,
  DIMENSION_KINDS,
  TAXONOMY,
  ReadLines,
  expand_inputs,
  parse_source_spec,
)
from beam_pipelines.io.streaming_sink import WriteWindowedTable
from beam_pipelines.pipelines import execution
from beam_pipelines.pipelines.batch_pipeline import (
  CountClean,
  CountDeadLetters,
)
from beam_pipelines.pipelines.options import ShopstreamOptions, parse_pipeline_options
from transforms import event_chain
from transforms.enrich.events import EnrichEvents
from transforms.enrich.product_dimension import PARSED_TAG, KeyedDimension
from transforms.enrich.pseudonymize import Pseudonymizer, salt_from_environment
from transforms.event_time import EventTimeError, parse_event_time
from transforms.parse.dimension_chunks import ParseCatalogCsv, ParseTaxonomy
from transforms.parse.parse_events import ParseEventsJsonl
from transforms.records import (
  DEAD_LETTER_TAG,
  EVENTS_TAG,
  SESSIONS_TAG,
  DeadLetter,
  Event,
  RawRecord,
)
from transforms.sessions.streaming import (
  DeduplicateStreaming,
  SessionizeStreaming,
  TimestampByEventTime,
)

_LOGGER = logging.getLogger(__name__)

PARSERS = {CATALOG_CSV: ParseCatalogCsv, TAXONOMY: ParseTaxonomy}
DIMENSION_IDS = {CATALOG_CSV: 'product_id', TAXONOMY: 'category_id'}


def json_event_time(data: bytes) -> Optional[int]:
  """The event_time of a canonical JSON record, for the source's watermark; None if unreadable."""
  try:
    value = orjson.loads(data).get('event_time')
    return parse_event_time(value) if value is not None else None
  except (orjson.JSONDecodeError, AttributeError, EventTimeError, OverflowError):
    return None


def to_raw_record(record: KinesisRecord) -> RawRecord:
  return RawRecord(
    f'kinesis:{record.stream}', int(record.sequence_number), record.data, record.arrival_time_us
  )


def kafka_to_raw_record(record: KafkaRecord) -> RawRecord:
  return RawRecord(f'kafka:{record.topic}', record.offset, record.data, record.timestamp_us)


def read_stream(p: beam.Pipeline, opts: ShopstreamOptions, kafka: Optional[KafkaConfig]):
  """The RawRecords of the stream: the Kafka topic of ``kafka``, else the options' Kinesis
  stream; and for Kafka the OffsetsMarks to commit once the tables are written (else None)."""
  if kafka is not None:
    records, marks = p | 'ReadKafka' >> ReadFromKafka(kafka, with_offsets=True)
    raw = records | 'ToRawRecords' >> beam.Map(kafka_to_raw_record).with_output_types(RawRecord)
    return raw, marks
  raw = (
    p
    | 'ReadKinesis' >> ReadFromKinesis(kinesis_config(opts))
    | 'ToRawRecords' >> beam.Map(to_raw_record).with_output_types(RawRecord)
  )
  return raw, None


def kafka_config(opts: ShopstreamOptions) -> KafkaConfig:
  return KafkaConfig(
    topic=opts.kafka_topic,
    bootstrap=opts.kafka_bootstrap,
    start=opts.kafka_start,
    group=opts.kafka_group,
    stop_after_idle_s=opts.stop_after_idle,
    max_records=opts.max_records,
    event_time_fn=json_event_time,
    commit_hold_s=commit_hold_s(
      opts.max_session_hours * 3600,
      opts.session_gap_minutes * 60,
      opts.allowed_lateness_minutes * 60,
      opts.file_window_minutes * 60,
    ),
  )


def new_job_id() -> str:
  """A streaming job's id: its submission time (UTC) and 4 random hex digits."""
  return f'{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}'


def kinesis_config(opts: ShopstreamOptions) -> KinesisConfig:
  return KinesisConfig(
    stream=opts.kinesis_stream,
    endpoint_url=opts.kinesis_endpoint_url,
    region=opts.kinesis_region,
    start_position=opts.kinesis_start,
    stop_after_idle_s=opts.stop_after_idle,
    max_records=opts.max_records,
    event_time_fn=json_event_time,
  )


def build_streaming_pipeline(
  p: beam.Pipeline, options: PipelineOptions, pseudonymizer: Optional[Pseudonymizer] = None
) -> dict[str, beam.PCollection]:
  """Adds the streaming graph to ``p``; returns the rows of each table it writes."""
  opts = options.view_as(ShopstreamOptions)
  if bool(opts.kinesis_stream) == bool(opts.kafka_topic):
    raise ValueError('one of --kinesis-stream NAME and --kafka-topic TOPIC is needed')
  if not opts.output:
    raise ValueError('--output DIR is needed')
  if table_store.for_options(opts).table_format != table_store.PARQUET:
    raise ValueError(
      'a stream writes Hive-partitioned Parquet files as its windows close: '
      '--table-format iceberg is for batch runs, backfills, replay and derive '
      '(stream into another output)'
    )
  files = expand_inputs([parse_source_spec(text) for text in opts.source or ()])
  if any(f.kind not in DIMENSION_KINDS for f in files):
    raise ValueError(
      f'with a stream, --source takes only the product dimension: {", ".join(DIMENSION_KINDS)}'
    )
  # A stream is never a generated sample: it needs the environment's salt.
  pseudonymizer = pseudonymizer or Pseudonymizer(salt_from_environment())
  # The product dimension: read here for its accounting and dead letters (as
  # in batch), and joined by RefreshingProductJoin, which reloads it on change.
  dead_letters = []
  for kind in sorted({f.kind for f in files}):
    read = p | f'Read {kind}' >> ReadLines(
      [f for f in files if f.kind == kind], chunk_bytes=CHUNK_BYTES
    )
    outputs = read['records'] | f'Parse {kind}' >> PARSERS[kind]()
    _ = outputs[PARSED_TAG] | f'Count {kind}' >> KeyedDimension(DIMENSION_IDS[kind])
    dead_letters.extend([read[DEAD_LETTER_TAG], outputs[DEAD_LETTER_TAG]])
  specs = [parse_source_spec(text) for text in opts.source or ()]
  join = (
    beam.ParDo(RefreshingProductJoin(specs, opts.dimension_refresh_minutes * 60))
    if specs
    else beam.Map(lambda event: event)
  )

  kafka = kafka_config(opts) if opts.kafka_topic else None
  records, offsets_marks = read_stream(p, opts, kafka)
  parsed = (
    records
    # Event times are bounded by each record's arrival, not by a time fixed
    # when the graph was built (after a day of running, every event was out
    # of range).
    | 'Parse' >> ParseEventsJsonl(opts.default_currency, None)
  )
  enriched = event_chain.enriched(
    parsed[EVENTS_TAG],
    EnrichEvents(pseudonymizer, opts.site_host),
    join.with_output_types(Event),
  )
  sessionized = event_chain.sessionized(
    enriched | 'EventTime' >> TimestampByEventTime(),
    DeduplicateStreaming(opts.dedup_hours * 3600),
    SessionizeStreaming(
      opts.session_gap_minutes * 60,
      opts.max_session_hours * 3600,
      opts.allowed_lateness_minutes * 60,
    ),
  )
  rows = {
    tables.EVENTS.name: sessionized[EVENTS_TAG]
    | 'CountClean' >> beam.ParDo(CountClean()).with_output_types(Event),
    tables.SESSIONS.name: sessionized[SESSIONS_TAG],
    tables.DEAD_LETTER.name: (
      (parsed[DEAD_LETTER_TAG], sessionized[DEAD_LETTER_TAG], *dead_letters)
      | 'FlattenDeadLetters' >> beam.Flatten()
      | 'CountDeadLetters' >> beam.ParDo(CountDeadLetters()).with_output_types(DeadLetter)
    ),
  }
  job = opts.stream_job_id or new_job_id()
  _LOGGER.info('stream job id %s: in the names of the files it writes', job)
  written = [
    table_rows
    | f'Write {name}'
    >> WriteWindowedTable(
      tables.TABLES[name], opts.output, opts.file_window_minutes * 60, opts.file_shards, job
    )
    for name, table_rows in rows.items()
  ]
  if kafka is not None:
    _ = (offsets_marks, *written) | 'CommitKafkaOffsets' >> CommitOffsets(
      kafka, opts.file_window_minutes * 60
    )
  return rows


# Beam's Java FlinkPipelineOptions.shutdownSourcesAfterIdleMs.
FLINK_SOURCE_SHUTDOWN = 'shutdown_sources_after_idle_ms'


def disable_embedded_state_cache() -> None:
  """Turns off the user-state cache of the in-process FnApiRunner worker.

  That worker hard-codes a 100 MB cache whose bookkeeping sizes every state
  value with objsize; py-spy put 53% of a streaming run there. Without it the
  demo's streaming run took 5.3 s instead of 15.1 s with identical tables.
  Other workers (Flink's SDK harness, --max_cache_memory_usage_mb) have the
  cache off by default already.
  """
  from apache_beam.runners.portability.fn_api_runner import worker_handlers

  worker_handlers.STATE_CACHE_SIZE_MB = 0


def run(argv: Optional[list[str]] = None) -> dict:
  """Runs the streaming pipeline until its stop condition; returns the run summary."""
  argv = list(argv or [])
  opts = parse_pipeline_options(argv).view_as(ShopstreamOptions)
  bounded = opts.stop_after_idle is not None or opts.max_records is not None
  if not bounded:
    _LOGGER.warning('no --stop-after-idle or --max-records: reading until stopped')
  elif not any(flag.startswith(f'--{FLINK_SOURCE_SHUTDOWN}') for flag in argv):
    # With checkpoints on, Flink keeps finished sources running, so the
    # watermark never reaches the end and a bounded run never ends (seen).
    # Other runners do not know the option and ignore it.
    argv.append(f'--{FLINK_SOURCE_SHUTDOWN}=0')
  options = parse_pipeline_options(argv)
  pipeline, _ = execution.build(options, build_streaming_pipeline)
  disable_embedded_state_cache()
  return execution.run_to_summary(pipeline, opts.output, pause_gc=bounded)
