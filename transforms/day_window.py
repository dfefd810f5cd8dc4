"""One day of a backfill: the day's rows, computed from the day plus its context.

A backfill computes each UTC day on its own, yet a day's rows must equal the
rows that day gets in one run over all the input. Sessions are what couples
days: a session belongs to the day it starts, its events may run past
midnight, and where a key's sessions start depends on the key's earlier
events. So a day D is computed from the events in its *context*:

    [D 00:00 - lookback, D+1 00:00 + lookahead)

- look-ahead = max session duration: a session that starts on D ends before
  D+1 00:00 + max duration, so all its events are in the context and its
  sessions row is complete;
- lookback = max session duration + gap: a key's session starts are fixed
  from its last pause (a gap >= session gap) onwards, and a key that paused
  at all in the last max duration + gap before D has its starts on D computed
  exactly from the context.

A key with no such pause (a crawler active without a 30-minute break for
more than the lookback) can get other session cut points than in a full
run. Such chains are detected and counted (``lookback_uncertain``) rather
than silently differing; a longer ``--lookback-hours`` makes them exact.

Records are kept or dropped by time; every dropped record is counted as
``other_day`` (it belongs to another day's run), so the accounting
invariant holds per day: read = clean + dead_letter + duplicate + filtered
+ other_day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import NamedTuple, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from transforms import accounting
from transforms.event_time import US_PER_DAY, US_PER_SECOND, utc_day
from transforms.records import SessionRow


# The time that puts each kind of row in its day (as the tables partition them).
def event_time_of(event) -> int:
  return event.event_time


def session_start_of(session: SessionRow) -> int:
  return session.session_start


def order_time_of(record) -> int:  # an OrderLine or an Order
  return record.order_time


LOOKBACK_UNCERTAIN = 'lookback_uncertain'


class DayWindow(NamedTuple):
  day: str  # YYYY-MM-DD
  day_start_us: int
  day_end_us: int
  context_start_us: int
  context_end_us: int
  gap_us: int

  def in_day(self, time_us: int) -> bool:
    return self.day_start_us <= time_us < self.day_end_us

  def in_context(self, time_us: int) -> bool:
    return self.context_start_us <= time_us < self.context_end_us


def day_window(day: dt.date, gap_s: float, max_duration_s: float, lookback_s=None) -> DayWindow:
  """The window of ``day``; lookback defaults to max duration + gap (see the module doc)."""
  start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * US_PER_SECOND
  lookback = lookback_s if lookback_s is not None else max_duration_s + gap_s
  return DayWindow(
    day=day.isoformat(),
    day_start_us=start,
    day_end_us=start + US_PER_DAY,
    context_start_us=start - round(lookback * US_PER_SECOND),
    context_end_us=start + US_PER_DAY + round(max_duration_s * US_PER_SECOND),
    gap_us=round(gap_s * US_PER_SECOND),
  )


def uncertain_sessions(window: DayWindow, sessions: list[SessionRow]) -> int:
  """How many of a key's sessions touching the day may be cut elsewhere in a full run.

  A key's first session in the context is trustworthy only if it starts at
  least a gap after the context starts (an unseen earlier event could join
  it otherwise). Sessions that follow it without a pause of a gap (cut by
  the max duration) inherit the doubt; the first pause ends it.
  """
  ordered = sorted(sessions, key=lambda s: s.session_start)
  if not ordered or ordered[0].session_start >= window.context_start_us + window.gap_us:
    return 0
  doubtful = 0
  previous_end = None
  for session in ordered:
    if previous_end is not None and session.session_start - previous_end >= window.gap_us:
      break
    if session.session_end >= window.day_start_us and session.session_start < window.day_end_us:
      doubtful += 1  # its events on the day, or its row, may differ
    previous_end = session.session_end
  return doubtful


class _KeepIn(accounting.CountingDoFn):
  """Keeps records whose time passes ``keep``; counts the rest as other_day.

  Also takes Arrow tables of records (event_batches), filtered by ``column``.
  """

  def __init__(
    self,
    time_of: Callable,
    keep: Callable[[int], bool],
    count_source: bool,
    column: Optional[str] = None,
    bounds: Optional[tuple[int, int]] = None,
  ):
    self._time_of = time_of
    self._keep = keep
    self._count_source = count_source
    self._column = column
    self._bounds = bounds

  def process(self, record):
    if isinstance(record, pa.Table):
      yield self._keep_rows(record)
    elif self._keep(self._time_of(record)):
      yield record
    elif self._count_source:
      self.count(accounting.OTHER_DAY, record.source)

  def _keep_rows(self, table: pa.Table) -> pa.Table:
    start, end = self._bounds  # type: ignore[misc]
    times = table[self._column]
    kept = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
    if self._count_source:
      dropped = table.filter(pc.invert(kept))['source'].value_counts()
      for entry in dropped.to_pylist():
        self.count(accounting.OTHER_DAY, entry['values'], entry['counts'])
    return table.filter(kept)


def keep_in_context(
  window: DayWindow, time_of: Callable, record_type: type, column: Optional[str] = None
):
  """Input records (events, order lines) inside the day's context; others counted.

  With ``column``, the elements are Arrow tables of records, filtered by it.
  """
  keep = _KeepIn(
    time_of, window.in_context, True, column, (window.context_start_us, window.context_end_us)
  )
  return beam.ParDo(keep).with_output_types(pa.Table if column else record_type)


def keep_in_day(
  window: DayWindow,
  time_of: Callable,
  record_type: type,
  count_source: bool,
  column: Optional[str] = None,
):
  """Rows of the day itself; dropped input records are counted when ``count_source``.

  With ``column``, the elements are Arrow tables of records, filtered by it.
  """
  keep = _KeepIn(
    time_of, window.in_day, count_source, column, (window.day_start_us, window.day_end_us)
  )
  return beam.ParDo(keep).with_output_types(pa.Table if column else record_type)


def keep_partition_day(window: DayWindow, partition_day: Callable, record_type: type):
  """Rows (dead letters) whose partition is the day; the rest counted as other_day."""
  return beam.ParDo(_KeepIn(partition_day, lambda day: day == window.day, True)).with_output_types(
    record_type
  )


class _CountUncertain(accounting.CountingDoFn):
  def __init__(self, window: DayWindow):
    self._window = window

  def process(self, keyed):
    key, sessions = keyed
    doubtful = uncertain_sessions(self._window, list(sessions))
    if doubtful:
      self.count(LOOKBACK_UNCERTAIN, utc_day(self._window.day_start_us), doubtful)
    return []


class CountUncertainSessions(beam.PTransform):
  """Counts the sessions touching the day whose start the lookback cannot vouch for."""

  def __init__(self, window: DayWindow):
    super().__init__()
    self._window = window

  def expand(self, sessions):
    window = self._window
    return (
      sessions
      | 'NearContextStart' >> beam.Filter(lambda s: s.session_start < window.day_end_us)
      | 'KeyBySessionKey' >> beam.Map(lambda s: (s.session_key, s))
      | 'GroupByKey' >> beam.GroupByKey()
      | 'CountUncertain' >> beam.ParDo(_CountUncertain(window))
    )
