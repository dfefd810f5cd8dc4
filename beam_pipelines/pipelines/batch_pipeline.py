"""The batch pipeline: legacy exports to the events, sessions and dead_letter tables.

    events:  read (per kind) -> parse -> enrich -> deduplicate -> sessionize -> Parquet
    orders:  read (per kind) -> parse -> group per order, number, sum --------> Parquet
    every parse step -> dead letters ------------------------------------------> Parquet

Run it through the CLI::

    shopstream run --runner-config runner_configs/direct.yaml \\
      --source events-jsonl='sample/events-*.jsonl.gz' \\
      --source access-log=sample/access.log --output out/

or from Python: ``run(['--source', 'access-log=a.log', '--output', 'out'])``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from functools import partial
from typing import Optional

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.io import parquet_sink, table_store, tables
from beam_pipelines.io.sources import (
  ACCESS_LOG,
  CATALOG_CSV,
  CHUNK_BYTES,
  EVENT_KINDS,
  EVENTS_JSONL,
  ORDER_KINDS,
  ORDERS_CSV,
  ORDERS_FIXED,
  TAXONOMY,
  ReadLines,
  estimated_input_bytes,
  expand_inputs,
  parse_source_spec,
  pseudonymizer_for,
)
from beam_pipelines.pipelines import execution
from beam_pipelines.pipelines.options import (
  ShopstreamOptions,
  bucket_count,
  parse_pipeline_options,
  worker_threads,
)
from transforms import accounting, day_window, event_chain
from transforms.dead_letters import DateTimelessLetters, first_times_of_tables
from transforms.enrich.events import EnrichEvents
from transforms.enrich.product_dimension import PARSED_TAG, JoinProductDimension, KeyedDimension
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_batches import from_batch
from transforms.event_time import parse_event_time
from transforms.orders import BuildOrders
from transforms.parse import parse_access_log, parse_events
from transforms.parse.access_log_chunks import AccessLogChunkParser
from transforms.parse.dimension_chunks import ParseCatalogCsv, ParseTaxonomy
from transforms.parse.event_chunks import EventChunkParser
from transforms.parse.fixed_width import Layout, load_layout
from transforms.parse.order_chunks import ParseFixedWidthOrders, ParseOrdersCsv
from transforms.parse.parse_fixed_orders import REQUIRED_COLUMNS
from transforms.parse.parse_line_chunks import ParseLineChunks
from transforms.records import (
  DEAD_LETTER_TAG,
  EVENTS_TAG,
  ORDER_LINES_TAG,
  ORDERS_TAG,
  SESSIONS_TAG,
  Category,
  DeadLetter,
  Event,
  Order,
  OrderLine,
  Product,
  SessionRow,
)
from transforms.sessions.deduplicate import DeduplicateEvents
from transforms.sessions.sessionize import Sessionize

_LOGGER = logging.getLogger(__name__)

# The main output tag of each kind's parser (the event kinds' is EVENTS_TAG).
MAIN_OUTPUT = {
  ORDERS_CSV: ORDER_LINES_TAG,
  ORDERS_FIXED: ORDER_LINES_TAG,
  CATALOG_CSV: PARSED_TAG,
  TAXONOMY: PARSED_TAG,
}


def reference_time_us(opts: ShopstreamOptions) -> int:
  if opts.reference_time:
    try:
      return parse_event_time(opts.reference_time)
    except ValueError as e:
      raise ValueError(f'--reference-time {opts.reference_time!r}: {e}') from e
  return int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000)


def new_run_id() -> str:
  return f'{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}'


class CountClean(accounting.CountingDoFn):
  """Counts the records that reach their table (events, order lines), per source;
  takes records or Arrow tables of them."""

  def process(self, record):
    if isinstance(record, pa.Table):
      for entry in record['source'].value_counts().to_pylist():
        self.count(accounting.CLEAN, entry['values'], entry['counts'])
    else:
      self.count(accounting.CLEAN, record.source)
    yield record


class CountDeadLetters(accounting.CountingDoFn):
  """Counts dead letters per source and per reason code."""

  def process(self, letter: DeadLetter):
    self.count(accounting.DEAD_LETTER, letter.source)
    for reason in letter.reason.split(','):
      self.count(accounting.DEAD_LETTER_REASON, reason)
    yield letter


def build_pipeline(
  p: beam.Pipeline, options: PipelineOptions, pseudonymizer: Optional[Pseudonymizer] = None
) -> dict[str, beam.PCollection]:
  """Adds the batch graph to ``p``; returns the rows of each table it writes.

  Raises ValueError for unusable options (no source, unknown kind, no match).
  """
  opts = options.view_as(ShopstreamOptions)
  threads = worker_threads(options)
  if not opts.source:
    raise ValueError('at least one --source KIND=PATH_OR_GLOB is needed')
  if not opts.output:
    raise ValueError('--output DIR is needed')
  files = expand_inputs([parse_source_spec(text) for text in opts.source])
  buckets = bucket_count(options, estimated_input_bytes(files))
  now_us = reference_time_us(opts)
  pseudonymizer = pseudonymizer or pseudonymizer_for(files)
  run_id = opts.run_id or new_run_id()
  show_progress = opts.progress == 'auto'
  layout = fixed_layout(opts, files)
  # Every kind is parsed a chunk at a time into Arrow tables; the event kinds'
  # tables go on as tables, the others' records one by one.
  line_parsers = {
    EVENTS_JSONL: (EventChunkParser(opts.default_currency, now_us), parse_events.STEP),
    ACCESS_LOG: (AccessLogChunkParser(pseudonymizer, now_us), parse_access_log.STEP),
  }
  parsers = {
    ORDERS_CSV: lambda: ParseOrdersCsv(
      pseudonymizer, opts.orders_timezone, opts.default_currency, now_us, threads
    ),
    ORDERS_FIXED: lambda: ParseFixedWidthOrders(
      layout,
      opts.fixed_encoding or layout.encoding,
      pseudonymizer,
      opts.orders_timezone,
      opts.default_currency,
      now_us,
      threads,
    ),
    CATALOG_CSV: lambda: ParseCatalogCsv(threads),
    TAXONOMY: lambda: ParseTaxonomy(threads),
  }

  # The event kinds are read and parsed in one step, so that their files and
  # byte ranges share the workers (a stage per kind waited on its own largest
  # input); parsed[EVENTS_TAG] holds their tables. Each other kind is read on
  # a branch of its own. Branches meet in bucketed shuffles (GroupIntoBuckets).
  parsed, dead_letters = {}, []
  event_files = [f for f in files if f.kind in EVENT_KINDS]
  if event_files:
    read = p | 'Read events' >> ReadLines(event_files, show_progress, chunk_bytes=CHUNK_BYTES)
    outputs = read['records'] | 'Parse events' >> ParseLineChunks(
      line_parsers, Event, EVENTS_TAG, threads
    )
    parsed[EVENTS_TAG] = outputs[EVENTS_TAG]
    dead_letters.extend([read[DEAD_LETTER_TAG], outputs[DEAD_LETTER_TAG]])
  for kind in sorted({f.kind for f in files} - set(EVENT_KINDS)):
    # EBCDIC exports have no line separator: records are cut by the layout's length.
    record_length = layout.record_length if kind == ORDERS_FIXED and not layout.newline else None
    read = p | f'Read {kind}' >> ReadLines(
      [f for f in files if f.kind == kind],
      show_progress,
      record_length,
      chunk_bytes=CHUNK_BYTES,
    )
    outputs = read['records'] | f'Parse {kind}' >> parsers[kind]()
    parsed[kind] = outputs[MAIN_OUTPUT[kind]]
    dead_letters.extend([read[DEAD_LETTER_TAG], outputs[DEAD_LETTER_TAG]])

  join = product_join(p, parsed)
  window = _day_window(opts)
  rows: dict[str, beam.PCollection] = {}
  # Joined before dedup, as in streaming: copies are weighed on whole rows.
  events = []
  if event_files:
    events.append(
      event_chain.enriched(
        parsed[EVENTS_TAG], EnrichEvents(pseudonymizer, opts.site_host), join(pa.Table)
      )
    )
  if window:
    events = [
      kind_events
      | f'Context {n}'
      >> day_window.keep_in_context(window, day_window.event_time_of, Event, 'event_time')
      for n, kind_events in enumerate(events)
    ]
  if events:
    sessionized = event_chain.sessionized(
      tuple(events),
      DeduplicateEvents(buckets, threads),
      Sessionize(opts.session_gap_minutes * 60, opts.max_session_hours * 3600, buckets, threads),
    )
    day_events, day_sessions = sessionized[EVENTS_TAG], sessionized[SESSIONS_TAG]
    if window:
      day_events = day_events | 'EventsOfTheDay' >> day_window.keep_in_day(
        window, day_window.event_time_of, Event, count_source=True, column='event_time'
      )
      _ = (
        day_sessions
        | 'SessionRows'
        >> beam.FlatMap(partial(from_batch, SessionRow)).with_output_types(SessionRow)
        | 'CountUncertainSessions' >> day_window.CountUncertainSessions(window)
      )
      day_sessions = day_sessions | 'SessionsOfTheDay' >> day_window.keep_in_day(
        window, day_window.session_start_of, SessionRow, count_source=False, column='session_start'
      )
    rows[tables.EVENTS.name] = day_events | 'CountCleanEvents' >> beam.ParDo(
      CountClean()
    ).with_output_types(pa.Table)
    rows[tables.SESSIONS.name] = day_sessions
  order_lines = [
    parsed[kind] | f'JoinProducts {kind}' >> join(OrderLine)
    for kind in ORDER_KINDS
    if kind in parsed
  ]
  if window:
    order_lines = [
      lines
      | f'OrderContext {n}'
      >> day_window.keep_in_context(window, day_window.order_time_of, OrderLine)
      for n, lines in enumerate(order_lines)
    ]
  if order_lines:
    orders = tuple(order_lines) | 'BuildOrders' >> BuildOrders(buckets)
    day_lines, day_orders = orders[ORDER_LINES_TAG], orders[ORDERS_TAG]
    if window:
      day_lines = day_lines | 'OrderLinesOfTheDay' >> day_window.keep_in_day(
        window, day_window.order_time_of, OrderLine, count_source=True
      )
      day_orders = day_orders | 'OrdersOfTheDay' >> day_window.keep_in_day(
        window, day_window.order_time_of, Order, count_source=False
      )
    rows[tables.ORDER_LINES.name] = day_lines | 'CountCleanOrderLines' >> beam.ParDo(
      CountClean()
    ).with_output_types(OrderLine)
    rows[tables.ORDERS.name] = day_orders
  # A letter without a time of its own is dated by its input's first record.
  times = (
    [
      parsed[EVENTS_TAG]
      | 'FirstTimes' >> beam.FlatMap(first_times_of_tables).with_output_types(tuple[str, int])
    ]
    if event_files
    else []
  ) + [
    parsed[kind]
    | f'OrderTimes {kind}'
    >> beam.Map(lambda line: (line.source, line.order_time)).with_output_types(tuple[str, int])
    for kind in ORDER_KINDS
    if kind in parsed
  ]
  letters = dead_letters | 'FlattenDeadLetters' >> beam.Flatten()
  if times:
    letters = letters | 'DateTimelessLetters' >> DateTimelessLetters(times)
  if window:
    letters = letters | 'DeadLettersOfTheDay' >> day_window.keep_partition_day(
      window, tables.DEAD_LETTER.partition_day, DeadLetter
    )
  rows[tables.DEAD_LETTER.name] = letters | 'CountDeadLetters' >> beam.ParDo(
    CountDeadLetters()
  ).with_output_types(DeadLetter)

  parquet_sink.write_tables(
    rows, tables.TABLES, opts.output, run_id, [window.day] if window else []
  )
  return rows


def _day_window(opts: ShopstreamOptions) -> Optional[day_window.DayWindow]:
  if not opts.day:
    return None
  return day_window.day_window(
    dt.date.fromisoformat(opts.day),
    opts.session_gap_minutes * 60,
    opts.max_session_hours * 3600,
    opts.lookback_hours * 3600 if opts.lookback_hours else None,
  )


def fixed_layout(opts: ShopstreamOptions, files) -> Optional[Layout]:
  """The layout orders-fixed inputs are cut by; ValueError when it is needed and bad."""
  if not any(f.kind == ORDERS_FIXED for f in files):
    return None
  if not opts.fixed_layout:
    raise ValueError('--source orders-fixed=... needs --fixed-layout LAYOUT.yaml')
  return load_fixed_layout(opts)


def load_fixed_layout(opts: ShopstreamOptions) -> Layout:
  """--fixed-layout, checked, and its code page (or --fixed-encoding) known."""
  layout = load_layout(opts.fixed_layout, REQUIRED_COLUMNS)
  encoding = opts.fixed_encoding or layout.encoding
  try:
    ''.encode(encoding)
  except LookupError:
    raise ValueError(f'--fixed-encoding {encoding!r} is no known code page') from None
  return layout


def product_join(p: beam.Pipeline, parsed: dict[str, beam.PCollection]):
  """A factory of the product-dimension join step; a pass-through without catalog or taxonomy."""
  if CATALOG_CSV not in parsed and TAXONOMY not in parsed:
    return lambda record_type: beam.Map(lambda record: record).with_output_types(record_type)

  def dimension(kind: str, id_field: str, record_type: type) -> beam.PCollection:
    if kind in parsed:
      return parsed[kind] | f'Dimension {kind}' >> KeyedDimension(id_field)
    return p | f'No {kind}' >> beam.Create([]).with_output_types(tuple[str, record_type])

  products = dimension(CATALOG_CSV, 'product_id', Product)
  categories = dimension(TAXONOMY, 'category_id', Category)
  return lambda record_type: JoinProductDimension(products, categories, record_type)


def run(argv: Optional[list[str]] = None, summary_dir: Optional[str] = None) -> dict:
  """Runs the batch pipeline to completion; returns the run summary.

  Raises ValueError for bad options and AccountingError if records went missing.
  """
  options = parse_pipeline_options(argv)
  opts = options.view_as(ShopstreamOptions)
  opts.run_id = opts.run_id or new_run_id()
  pipeline, _ = execution.build(options, build_pipeline)
  # After build: the pipeline's options (an S3 endpoint, say) reach FileSystems there.
  store = table_store.for_options(opts)
  try:
    return execution.run_to_summary(
      pipeline, opts.output, summary_dir=summary_dir, run_id=opts.run_id, store=store
    )
  except Exception:
    # The tables are untouched (nothing was published); drop what was staged.
    parquet_sink.remove_tree(parquet_sink.staging_root(opts.output, opts.run_id))
    raise
