"""The derived tables: interactions, item_pairs, session_sequences, customers and
retention_cohorts.

They are computed from the tables a run left in the output (events,
sessions, orders, order_lines), read back from Parquet, so they are the same
whichever mode wrote those tables: a batch run and a backfill derive them at
their end, a stream on Flink by a scheduled ``shopstream derive``. Each
derive replaces the derived tables whole (a snapshot; ``customers`` says
``as_of``).

    shopstream derive --output tables/ [--interaction-weights product_view=1,...]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.io import parquet_sink, table_store, tables
from beam_pipelines.io.tables import TableSpec
from beam_pipelines.pipelines import execution, run_summary
from beam_pipelines.pipelines.batch_pipeline import new_run_id
from beam_pipelines.pipelines.options import ShopstreamOptions, parse_pipeline_options
from transforms.derived.recommendations import (
  SEQUENCES_TAG,
  BuildInteractions,
  BuildSessionTables,
  parse_weights,
)
from transforms.derived.retention import BuildCustomers, BuildRetentionCohorts
from transforms.event_time import parse_event_time

_LOGGER = logging.getLogger(__name__)


def rows_of(spec: TableSpec, arrow_table: pa.Table) -> list[tuple]:
  """Arrow rows as ``spec.row_type`` records: times as UTC microseconds, money as text."""
  columns = []
  for name in spec.row_type._fields:  # type: ignore[attr-defined]
    if name not in arrow_table.column_names:
      columns.append(None)
      continue
    column = arrow_table.column(name)
    if pa.types.is_timestamp(column.type):
      column = column.cast(pa.int64())
    elif pa.types.is_decimal(column.type):
      column = column.cast(pa.string())
    columns.append(column.to_pylist())
  count = arrow_table.num_rows
  filled = [values if values is not None else [None] * count for values in columns]
  return [spec.row_type._make(row) for row in zip(*filled, strict=True)]  # type: ignore[attr-defined]


class _ReadParquetRows(beam.DoFn):
  def __init__(self, spec: TableSpec):
    self._spec = spec

  def process(self, path: str):
    wanted = [n for n in self._spec.schema.names if n in self._spec.row_type._fields]  # type: ignore[attr-defined]
    with FileSystems.open(path) as f:
      table = pq.read_table(f, columns=wanted)
    yield from rows_of(self._spec, table)


class ReadTable(beam.PTransform):
  """The rows of one table of an output folder (optionally some dt days only)."""

  def __init__(self, spec: TableSpec, output: str, days: Optional[Iterable[str]] = None):
    super().__init__()
    self._spec = spec
    files = table_store.table_files(output, spec.name)
    if days is not None:
      wanted = set(days)
      files = [file for file in files if file.day in wanted]
    self._files = [file.path for file in files]

  def expand(self, pbegin):
    return (
      pbegin
      | 'ListFiles' >> beam.Create(self._files).with_output_types(str)
      | 'ReadRows'
      >> beam.ParDo(_ReadParquetRows(self._spec)).with_output_types(self._spec.row_type)
    )


def build_derived(p: beam.Pipeline, options: PipelineOptions) -> dict[str, beam.PCollection]:
  """Adds the derive graph to ``p``; returns the rows of each derived table."""
  opts = options.view_as(ShopstreamOptions)
  if not opts.output:
    raise ValueError('--output DIR (the tables to derive from) is needed')
  weights = parse_weights(opts.interaction_weights or '')
  as_of = parse_event_time(opts.as_of) if opts.as_of else None
  events = p | 'ReadEvents' >> ReadTable(tables.EVENTS, opts.output)
  sessions = p | 'ReadSessions' >> ReadTable(tables.SESSIONS, opts.output)
  orders = p | 'ReadOrders' >> ReadTable(tables.ORDERS, opts.output)
  order_lines = p | 'ReadOrderLines' >> ReadTable(tables.ORDER_LINES, opts.output)
  session_tables = (events, order_lines) | 'SessionTables' >> BuildSessionTables(
    opts.max_session_items
  )
  return {
    tables.INTERACTIONS.name: events | 'Interactions' >> BuildInteractions(weights),
    tables.ITEM_PAIRS.name: session_tables['item_pairs'],
    tables.SESSION_SEQUENCES.name: session_tables[SEQUENCES_TAG],
    tables.CUSTOMERS.name: (orders, sessions) | 'Customers' >> BuildCustomers(as_of),
    tables.RETENTION_COHORTS.name: (orders, sessions)
    | 'RetentionCohorts' >> BuildRetentionCohorts(as_of),
  }


def run(argv: Optional[list[str]] = None) -> dict[str, int]:
  """Derives the tables of ``--output``; returns rows written per derived table."""
  options = parse_pipeline_options(argv)
  opts = options.view_as(ShopstreamOptions)
  pipeline, rows = execution.build(options, build_derived)
  run_id = f'derive-{new_run_id()}'
  store = table_store.for_options(opts)
  parquet_sink.write_tables(
    rows, tables.DERIVED_TABLES, opts.output, run_id, whole_tables=list(rows)
  )
  with execution.cyclic_gc_paused():
    result = pipeline.run()
    result.wait_until_finish()
  store.publish_staged(run_id)
  counters = run_summary.committed_counters(result)
  counts = {name: counters.get(f'table_rows|{name}', 0) for name in tables.DERIVED_TABLES}
  _LOGGER.info('derived tables in %s: %s', opts.output, counts)
  return counts
