"""``shopstream replay``: dead letters back through the current transforms.

After a parser fix or a new event-type synonym, the clickstream's dead
letters (sources events-jsonl, access-log and kinesis, and ``late`` events)
are parsed again:

1. plan (plain Python, the parse functions of the batch path): which letters
   are in scope (``--reason``, ``--from/--to`` on their partition day), which
   now parse (recovered), are filtered, or still fail (with today's reason);
   recovered events make their days *affected*: every day a session through
   them can touch (from a lookback before to a max session after);
2. fold (a Beam pipeline, the batch transforms): the events table of the
   affected days and their context is read back, the recovered events are
   enriched and added, deduplicated by event_id and sessionized again; the
   affected days' events and sessions partitions are replaced whole, as a
   backfill does, and the dead_letter partitions the letters came from are
   rewritten without the letters that are now accounted for. Still-failing
   letters stay, with their new reason, so a second replay recovers nothing
   twice.

Every replayed letter is accounted: replayed = clean + dead_letter +
duplicate + filtered (``<output>/_replay/<id>.json``). Order-history and
dimension dead letters are not replayed (their tables would need the other
lines of their order); they stay as they are and are counted as skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from collections import Counter
from typing import Optional

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import parquet_sink, run_summary, tables
from beam_pipelines.batch_pipeline import new_run_id
from beam_pipelines.derived_pipeline import ReadTable, partition_of, rows_of, table_files
from beam_pipelines.dimension_refresh import RefreshingProductJoin
from beam_pipelines.options import ShopstreamOptions
from beam_pipelines.sources import ACCESS_LOG, DIMENSION_KINDS, EVENTS_JSONL, parse_source_spec
from transforms import accounting
from transforms.dead_letters import RecordError, RecordFiltered, check_size, make_dead_letter
from transforms.deduplicate import DeduplicateEvents
from transforms.enrich import EnrichEvents
from transforms.event_time import US_PER_SECOND, utc_day
from transforms.parse_access_log import AccessLogParser
from transforms.parse_events import EventLineParser
from transforms.pseudonymize import Pseudonymizer, salt_from_environment
from transforms.records import EVENTS_TAG, SESSIONS_TAG, DeadLetter, Event, RawRecord, SessionRow
from transforms.sessionize import Sessionize

_LOGGER = logging.getLogger(__name__)

REPLAY_DIR = '_replay'
# Source kinds whose dead letters replay into events; kinesis records and
# late events are canonical JSON.
JSON_KINDS = (EVENTS_JSONL, 'kinesis')
REPLAYABLE_KINDS = (*JSON_KINDS, ACCESS_LOG)
STEP = 'replay'


def source_kind(source: str) -> str:
  return source.split(':', 1)[0]


@dataclasses.dataclass
class ReplayPlan:
  in_scope: list[tuple[str, DeadLetter]]  # (partition day, letter)
  recovered: list[Event]  # parsed again, not yet enriched
  still_failing: list[tuple[str, DeadLetter]]  # (partition day of the old letter, new letter)
  filtered: int
  skipped: int  # letters of sources that do not replay
  affected_days: list[str]
  letter_days: list[str]

  def counts(self) -> dict[str, int]:
    return {
      'replayed': len(self.in_scope),
      'recovered': len(self.recovered),
      'still_failing': len(self.still_failing),
      'filtered': self.filtered,
      'skipped': self.skipped,
    }


def read_dead_letters(output: str, first: Optional[str], last: Optional[str]) -> list[tuple]:
  """(partition day, DeadLetter) of every dead letter in the day range."""
  letters = []
  for path in table_files(output, tables.DEAD_LETTER.name):
    day = partition_of(path)
    if (first and day < first) or (last and day > last):
      continue
    letters.extend((day, letter) for letter in rows_of(tables.DEAD_LETTER, pq.read_table(path)))
  return letters


def plan_replay(
  output: str,
  reasons: list[str],
  first: Optional[str],
  last: Optional[str],
  pseudonymizer: Pseudonymizer,
  now_us: int,
  default_currency: str,
  lookback_s: float,
  max_session_s: float,
) -> ReplayPlan:
  parsers = {
    EVENTS_JSONL: EventLineParser(default_currency, now_us),
    ACCESS_LOG: AccessLogParser(pseudonymizer, now_us),
  }
  in_scope, recovered, failing, filtered, skipped = [], [], [], 0, 0
  for day, letter in read_dead_letters(output, first, last):
    if reasons and not set(reasons) & set(letter.reason.split(',')):
      continue
    kind = source_kind(letter.source)
    if kind not in REPLAYABLE_KINDS:
      skipped += 1
      continue
    in_scope.append((day, letter))
    position = int(letter.position) if letter.position.isdigit() else 0
    record = RawRecord(letter.source, position, letter.payload, letter.input_time)
    try:
      check_size(record)
      recovered.append(parsers[EVENTS_JSONL if kind in JSON_KINDS else kind](record))
    except RecordFiltered:
      filtered += 1
    except RecordError as error:
      failing.append(
        (day, make_dead_letter(record, error, STEP)._replace(position=letter.position))
      )
  lookback_us = round(lookback_s * US_PER_SECOND)
  ahead_us = round(max_session_s * US_PER_SECOND)
  affected = set()
  for event in recovered:
    day = utc_day(event.event_time - lookback_us)
    while day <= utc_day(event.event_time + ahead_us):
      affected.add(day)
      day = _next_day(day)
  return ReplayPlan(
    in_scope,
    recovered,
    failing,
    filtered,
    skipped,
    sorted(affected),
    sorted({day for day, _ in in_scope}),
  )


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
    f'(plus {plan.skipped:,} of order or dimension sources, not replayed)',
    *(f'  {reason}: {n:,}' for reason, n in sorted(by_reason.items())),
    f'recovered now: {len(plan.recovered):,}; filtered now: {plan.filtered:,}; '
    f'still failing: {len(plan.still_failing):,}',
    f'days to recompute (events, sessions): {", ".join(plan.affected_days) or "none"}',
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


def fold(plan: ReplayPlan, options: PipelineOptions, pseudonymizer: Pseudonymizer) -> dict:
  """Recomputes the affected days and rewrites the dead letters; returns the counters."""
  opts = options.view_as(ShopstreamOptions)
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
  existing = p | 'ReadEvents' >> ReadTable(tables.EVENTS, output, context_days(plan.affected_days))
  recovered = (
    p
    | 'Recovered' >> beam.Create(plan.recovered).with_output_types(Event)
    | 'Enrich' >> EnrichEvents(pseudonymizer, opts.site_host)
  )
  if dimension:
    recovered = recovered | 'JoinProducts' >> beam.ParDo(
      RefreshingProductJoin(dimension, refresh_s=float('inf'))
    ).with_output_types(Event)
  sessionized = (
    (existing, recovered)
    | 'Deduplicate' >> DeduplicateEvents(opts.num_buckets)
    | 'Sessionize'
    >> Sessionize(opts.session_gap_minutes * 60, opts.max_session_hours * 3600, opts.num_buckets)
  )
  rows = {
    tables.EVENTS.name: sessionized[EVENTS_TAG]
    | 'EventsOfDays'
    >> beam.ParDo(_KeepDays(plan.affected_days, lambda e: e.event_time)).with_output_types(Event),
    tables.SESSIONS.name: sessionized[SESSIONS_TAG]
    | 'SessionsOfDays'
    >> beam.ParDo(_KeepDays(plan.affected_days, lambda s: s.session_start)).with_output_types(
      SessionRow
    ),
    tables.DEAD_LETTER.name: p
    | 'DeadLetters' >> beam.Create(letters).with_output_types(DeadLetter),
  }
  owned = {
    tables.EVENTS.name: plan.affected_days,
    tables.SESSIONS.name: plan.affected_days,
    tables.DEAD_LETTER.name: plan.letter_days,
  }
  parquet_sink.write_tables(rows, tables.TABLES, output, run_id, owned_days=owned)
  result = p.run()
  result.wait_until_finish()
  return run_summary.committed_counters(result)


def run(
  argv: list[str], reasons: list[str], first: Optional[str], last: Optional[str], dry_run: bool
) -> dict:
  """Replays the dead letters in scope; returns the replay's accounting."""
  options = PipelineOptions(argv)
  opts = options.view_as(ShopstreamOptions)
  pseudonymizer = Pseudonymizer(salt_from_environment())
  from beam_pipelines.batch_pipeline import reference_time_us

  plan = plan_replay(
    opts.output,
    reasons,
    first,
    last,
    pseudonymizer,
    reference_time_us(opts),
    opts.default_currency,
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
    clean=len(plan.recovered) - duplicates,
    dead_letter=len(plan.still_failing),
    affected_days=plan.affected_days,
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
