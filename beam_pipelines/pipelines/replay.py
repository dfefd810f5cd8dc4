"""``shopstream replay``: dead letters back through the current transforms.

After a parser fix or a new event-type synonym, the dead letters of the
clickstream (sources events-jsonl, access-log and kinesis, and ``late``
events) and of the order history (orders-csv, orders-fixed) are parsed again:

1. plan (plain Python, the parse functions of the batch path): which letters
   are in scope (``--reason``, ``--from/--to`` on their partition day), which
   now parse (recovered), are filtered, or still fail (with today's reason);
   recovered events make their days *affected*: every day a session through
   them can touch (from a lookback before to a max session after); recovered
   order lines affect their own day and every day holding a line of an order
   on an affected day;
2. fold (a Beam pipeline, the batch transforms): the events table of the
   affected days and their context is read back, the recovered events are
   enriched and added, deduplicated by event_id and sessionized again; the
   order lines of the affected order days are read back, the recovered lines
   joined to the product dimension and added, and the orders built again
   (lines numbered by their place in the source, repeats dropped). The
   affected partitions are replaced whole, as a backfill does, and the
   dead_letter partitions the letters came from are rewritten without the
   letters that are now accounted for. Still-failing letters stay, with their
   new reason, so a second replay recovers nothing twice.

Every replayed letter is accounted: replayed = clean + dead_letter +
duplicate + filtered (``<output>/_replay/<id>.json``). Dimension dead
letters (catalog, taxonomy) are not replayed: rerun with the fixed dimension
files instead. They, and order letters of order_lines tables written before
the ``position`` column existed, stay as they are and count as skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from collections import Counter
from decimal import Decimal
from functools import partial
from typing import Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.io import parquet_sink, table_store, tables
from beam_pipelines.io.dimension_refresh import RefreshingProductJoin
from beam_pipelines.io.sources import (
  DIMENSION_KINDS,
  EVENTS_JSONL,
  ORDER_KINDS,
  parse_source_spec,
  record_parsers,
)
from beam_pipelines.io.table_store import table_files
from beam_pipelines.pipelines import run_summary
from beam_pipelines.pipelines.batch_pipeline import new_run_id
from beam_pipelines.pipelines.derived_pipeline import ReadTable, rows_of
from beam_pipelines.pipelines.options import (
  ShopstreamOptions,
  bucket_count,
  parse_pipeline_options,
  worker_threads,
)
from transforms import accounting, day_window, event_chain
from transforms.dead_letters import (
  RecordError,
  RecordFiltered,
  check_size,
  kind_of_source,
  make_dead_letter,
)
from transforms.enrich.events import EnrichEvents
from transforms.enrich.pseudonymize import Pseudonymizer, salt_from_environment
from transforms.event_batches import from_batch
from transforms.event_time import US_PER_SECOND, utc_day
from transforms.orders import BuildOrders
from transforms.parse.parse_orders import money
from transforms.records import (
  EVENTS_TAG,
  ORDER_LINES_TAG,
  ORDERS_TAG,
  SESSIONS_TAG,
  DeadLetter,
  Event,
  Order,
  OrderLine,
  RawRecord,
  SessionRow,
)
from transforms.sessions.deduplicate import DeduplicateEvents
from transforms.sessions.sessionize import Sessionize

_LOGGER = logging.getLogger(__name__)

REPLAY_DIR = '_replay'
# Kinesis records and late events are canonical JSON, as events-jsonl lines.
JSON_KINDS = (EVENTS_JSONL, 'kinesis')
STEP = 'replay'


@dataclasses.dataclass
class ReplayPlan:
  in_scope: list[tuple[str, DeadLetter]]  # (partition day, letter)
  recovered: list[Event]  # parsed again, not yet enriched
  still_failing: list[tuple[str, DeadLetter]]  # (partition day of the old letter, new letter)
  filtered: int
  skipped: int  # letters of sources that do not replay
  affected_days: list[str]
  letter_days: list[str]
  recovered_lines: list[OrderLine] = dataclasses.field(default_factory=list)
  order_days: list[str] = dataclasses.field(default_factory=list)  # orders to rebuild

  def counts(self) -> dict[str, int]:
    return {
      'replayed': len(self.in_scope),
      'recovered': len(self.recovered) + len(self.recovered_lines),
      'still_failing': len(self.still_failing),
      'filtered': self.filtered,
      'skipped': self.skipped,
    }


def read_dead_letters(output: str, first: Optional[str], last: Optional[str]) -> list[tuple]:
  """(partition day, DeadLetter) of every dead letter in the day range."""
  letters = []
  for path, day in table_files(output, tables.DEAD_LETTER.name):
    if (first and day < first) or (last and day > last):
      continue
    letters.extend((day, letter) for letter in rows_of(tables.DEAD_LETTER, pq.read_table(path)))
  return letters


def plan_replay(
  output: str,
  reasons: list[str],
  first: Optional[str],
  last: Optional[str],
  parsers: dict[str, tuple],
  lookback_s: float,
  max_session_s: float,
) -> ReplayPlan:
  """``parsers``: sources.record_parsers of the options the tables were written with."""
  parse_of = {kind: parse for kind, (parse, _) in parsers.items()}
  parse_of.update(dict.fromkeys(JSON_KINDS, parse_of[EVENTS_JSONL]))
  if not _order_lines_have_positions(output):
    for kind in ORDER_KINDS:
      parse_of.pop(kind, None)
  in_scope, recovered, failing, filtered, skipped = [], [], [], 0, 0
  for day, letter in read_dead_letters(output, first, last):
    if reasons and not set(reasons) & set(letter.reason.split(',')):
      continue
    parse = parse_of.get(kind_of_source(letter.source))
    if parse is None:
      skipped += 1
      continue
    in_scope.append((day, letter))
    position = int(letter.position) if letter.position.isdigit() else 0
    record = RawRecord(letter.source, position, letter.payload, letter.input_time)
    try:
      check_size(record)
      recovered.append(parse(record))
    except RecordFiltered:
      filtered += 1
    except RecordError as error:
      failing.append(
        (day, make_dead_letter(record, error, STEP)._replace(position=letter.position))
      )
  events = [record for record in recovered if isinstance(record, Event)]
  lines = [record for record in recovered if isinstance(record, OrderLine)]
  lookback_us = round(lookback_s * US_PER_SECOND)
  ahead_us = round(max_session_s * US_PER_SECOND)
  affected = set()
  for event in events:
    day = utc_day(event.event_time - lookback_us)
    while day <= utc_day(event.event_time + ahead_us):
      affected.add(day)
      day = _next_day(day)
  return ReplayPlan(
    in_scope,
    events,
    failing,
    filtered,
    skipped,
    sorted(affected),
    sorted({day for day, _ in in_scope}),
    lines,
    order_days(output, lines),
  )


def _order_lines_have_positions(output: str) -> bool:
  """Whether order lines can be numbered among the stored ones (tables since ``position``).

  Every file is checked: a table that older runs wrote in part mixes both.
  """
  files = table_files(output, tables.ORDER_LINES.name)
  return all('position' in pq.read_schema(file.path).names for file in files)


def order_days(output: str, recovered: list[OrderLine]) -> list[str]:
  """The days whose orders and order lines a replay rebuilds.

  A recovered line's day, and every day holding a line of an order on those
  days, until no order has lines outside them: an order is rebuilt only from
  all of its lines. (Legacy orders have one invoice time, so this is
  normally the recovered lines' days and nothing more.)
  """
  if not recovered:
    return []
  days_of_order: dict[str, set[str]] = {}
  orders_of_day: dict[str, set[str]] = {}
  for path, day in table_files(output, tables.ORDER_LINES.name):
    ids = set(pq.read_table(path, columns=['order_id']).column('order_id').to_pylist())
    orders_of_day.setdefault(day, set()).update(ids)
    for order_id in ids:
      days_of_order.setdefault(order_id, set()).add(day)
  days = {utc_day(line.order_time) for line in recovered}
  pending = {line.order_id for line in recovered}
  for day in days:
    pending |= orders_of_day.get(day, set())
  seen: set[str] = set()
  while pending:
    order_id = pending.pop()
    seen.add(order_id)
    for day in days_of_order.get(order_id, set()) - days:
      days.add(day)
      pending |= orders_of_day[day] - seen
  return sorted(days)


def _next_day(day: str, days: int = 1) -> str:
  return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


def context_days(affected: list[str]) -> list[str]:
  """The event partitions a recomputation of the affected days reads (two days around)."""
  days = set()
  for day in affected:
    days.update(_next_day(day, n) for n in range(-2, 3))
  return sorted(days)


def describe(plan: ReplayPlan) -> str:
  by_reason = Counter(reason for _, letter in plan.in_scope for reason in letter.reason.split(','))
  lines = [
    f'dead letters to replay: {len(plan.in_scope):,} '
    f'(plus {plan.skipped:,} of dimension sources or old order tables, not replayed)',
    *(f'  {reason}: {n:,}' for reason, n in sorted(by_reason.items())),
    f'recovered now: {plan.counts()["recovered"]:,}; filtered now: {plan.filtered:,}; '
    f'still failing: {len(plan.still_failing):,}',
    f'days to recompute (events, sessions): {", ".join(plan.affected_days) or "none"}',
    f'days to recompute (orders, order_lines): {", ".join(plan.order_days) or "none"}',
    f'dead_letter partitions to rewrite: {", ".join(plan.letter_days) or "none"}',
  ]
  return '\n'.join(lines) + '\n'


class _KeepDays(beam.DoFn):
  def __init__(self, days: list[str], time_of):
    self._days = frozenset(days)
    self._time_of = time_of

  def process(self, row):
    if utc_day(self._time_of(row)) in self._days:
      yield row


def as_parsed(line: OrderLine) -> OrderLine:
  """A stored line with its money as the parser writes it ('19.99', not the table's '19.9900').

  BuildOrders finds a repeated line by comparing content, so a recovered copy
  of a stored line must compare equal to it.
  """
  return line._replace(
    unit_price=money(Decimal(line.unit_price)), amount=money(Decimal(line.amount))
  )


def fold(plan: ReplayPlan, options: PipelineOptions, pseudonymizer: Pseudonymizer) -> dict:
  """Recomputes the affected days and rewrites the dead letters; returns the counters."""
  opts = options.view_as(ShopstreamOptions)
  buckets = bucket_count(options)
  threads = worker_threads(options)
  output = opts.output
  replayed = {(day, letter.source, letter.position, letter.reason) for day, letter in plan.in_scope}
  kept_letters = [
    letter
    for day, letter in read_dead_letters(output, None, None)
    if day in plan.letter_days
    and (day, letter.source, letter.position, letter.reason) not in replayed
  ]
  letters = kept_letters + [letter for _, letter in plan.still_failing]
  run_id = f'replay-{new_run_id()}'
  dimension = [
    spec
    for spec in (parse_source_spec(s) for s in opts.source or ())
    if spec.kind in DIMENSION_KINDS
  ]
  p = beam.Pipeline(options=options)

  def product_join(record_type: type) -> Optional[beam.PTransform]:
    if not dimension:
      return None
    return beam.ParDo(RefreshingProductJoin(dimension, refresh_s=float('inf'))).with_output_types(
      record_type
    )

  existing = p | 'ReadEvents' >> ReadTable(tables.EVENTS, output, context_days(plan.affected_days))
  recovered = event_chain.enriched(
    p | 'Recovered' >> beam.Create(plan.recovered).with_output_types(Event),
    EnrichEvents(pseudonymizer, opts.site_host),
    product_join(Event),
  )
  sessionized = event_chain.sessionized(
    (existing, recovered),
    DeduplicateEvents(buckets, threads),
    Sessionize(opts.session_gap_minutes * 60, opts.max_session_hours * 3600, buckets, threads),
  )
  stored_lines = (
    p
    | 'ReadOrderLines' >> ReadTable(tables.ORDER_LINES, output, plan.order_days)
    | 'AsParsed' >> beam.Map(as_parsed).with_output_types(OrderLine)
  )
  recovered_lines = p | 'RecoveredLines' >> beam.Create(plan.recovered_lines).with_output_types(
    OrderLine
  )
  if dimension:
    recovered_lines = recovered_lines | 'JoinProductsToLines' >> product_join(OrderLine)
  orders = (stored_lines, recovered_lines) | 'BuildOrders' >> BuildOrders(buckets)

  def of_days(pcoll, days: list[str], time_of, record_type: type, label: str):
    if pcoll.element_type is pa.Table:  # the columnar steps' output: a replay is small
      pcoll = pcoll | f'{label}Rows' >> beam.FlatMap(partial(from_batch, record_type))
    return pcoll | label >> beam.ParDo(_KeepDays(days, time_of)).with_output_types(record_type)

  rows = {
    tables.EVENTS.name: of_days(
      sessionized[EVENTS_TAG], plan.affected_days, day_window.event_time_of, Event, 'EventsOfDays'
    ),
    tables.SESSIONS.name: of_days(
      sessionized[SESSIONS_TAG],
      plan.affected_days,
      day_window.session_start_of,
      SessionRow,
      'SessionsOfDays',
    ),
    tables.ORDER_LINES.name: of_days(
      orders[ORDER_LINES_TAG],
      plan.order_days,
      day_window.order_time_of,
      OrderLine,
      'OrderLinesOfDays',
    ),
    tables.ORDERS.name: of_days(
      orders[ORDERS_TAG], plan.order_days, day_window.order_time_of, Order, 'OrdersOfDays'
    ),
    tables.DEAD_LETTER.name: p
    | 'DeadLetters' >> beam.Create(letters).with_output_types(DeadLetter),
  }
  owned = {
    tables.EVENTS.name: plan.affected_days,
    tables.SESSIONS.name: plan.affected_days,
    tables.ORDER_LINES.name: plan.order_days,
    tables.ORDERS.name: plan.order_days,
    tables.DEAD_LETTER.name: plan.letter_days,
  }
  store = table_store.for_output(output)
  parquet_sink.write_tables(rows, tables.TABLES, output, run_id, owned_days=owned)
  result = p.run()
  result.wait_until_finish()
  store.publish_staged(run_id)
  return run_summary.committed_counters(result)


def run(
  argv: list[str], reasons: list[str], first: Optional[str], last: Optional[str], dry_run: bool
) -> dict:
  """Replays the dead letters in scope; returns the replay's accounting."""
  options = parse_pipeline_options(argv)
  opts = options.view_as(ShopstreamOptions)
  pseudonymizer = Pseudonymizer(salt_from_environment())
  from beam_pipelines.pipelines.batch_pipeline import load_fixed_layout, reference_time_us

  layout = load_fixed_layout(opts) if opts.fixed_layout else None
  plan = plan_replay(
    opts.output,
    reasons,
    first,
    last,
    record_parsers(opts, layout, pseudonymizer, reference_time_us(opts)),
    opts.max_session_hours * 3600 + opts.session_gap_minutes * 60,
    opts.max_session_hours * 3600,
  )
  report = {'plan': describe(plan), **plan.counts()}
  if dry_run or not plan.in_scope:
    return report
  counters = fold(plan, options, pseudonymizer)
  duplicates = sum(
    value for name, value in counters.items() if name.startswith(accounting.DUPLICATE + '|')
  )
  report.update(
    duplicate=duplicates,
    clean=report['recovered'] - duplicates,
    dead_letter=len(plan.still_failing),
    affected_days=plan.affected_days,
    order_days=plan.order_days,
  )
  balance = report['clean'] + report['dead_letter'] + report['duplicate'] + report['filtered']
  if balance != report['replayed']:
    raise run_summary.AccountingError(
      f'replayed {report["replayed"]} != clean + dead_letter + duplicate + filtered ({balance})'
    )
  directory = os.path.join(opts.output, REPLAY_DIR)
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, f'{new_run_id()}.json'), 'w', encoding='utf-8') as f:
    json.dump({k: v for k, v in report.items() if k != 'plan'}, f, indent=2)
  return report
