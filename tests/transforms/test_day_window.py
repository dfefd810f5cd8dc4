"""A backfill day's window and the sessions its lookback cannot vouch for."""

from __future__ import annotations

import datetime as dt

from transforms.day_window import day_window, uncertain_sessions
from transforms.event_time import format_us
from transforms.records import SessionRow

HOUR_US = 3600 * 1_000_000
GAP_S, MAX_S = 1800, 86_400
WINDOW = day_window(dt.date(2026, 3, 2), GAP_S, MAX_S)


def session(key: str, start_us: int, end_us: int) -> SessionRow:
  values = dict.fromkeys(SessionRow._fields)
  values.update(session_key=key, session_start=start_us, session_end=end_us)
  return SessionRow(**values)


def test_the_context_reaches_back_a_session_and_a_gap_and_ahead_a_session():
  assert format_us(WINDOW.day_start_us) == '2026-03-02T00:00:00+00:00'
  assert format_us(WINDOW.day_end_us) == '2026-03-03T00:00:00+00:00'
  assert format_us(WINDOW.context_start_us) == '2026-02-28T23:30:00+00:00'
  assert format_us(WINDOW.context_end_us) == '2026-03-04T00:00:00+00:00'
  assert WINDOW.in_day(WINDOW.day_start_us) and not WINDOW.in_day(WINDOW.day_end_us)
  longer = day_window(dt.date(2026, 3, 2), GAP_S, MAX_S, lookback_s=72 * 3600)
  assert format_us(longer.context_start_us) == '2026-02-27T00:00:00+00:00'


def test_a_key_that_paused_inside_the_context_is_certain():
  start = WINDOW.context_start_us
  sessions = [
    session('k', start + 60_000_000, start + 2 * HOUR_US),  # at the edge...
    session('k', start + 3 * HOUR_US, WINDOW.day_start_us + HOUR_US),  # ...but a pause follows
  ]
  assert uncertain_sessions(WINDOW, sessions) == 0


def test_a_key_first_seen_a_gap_after_the_context_start_is_certain():
  start = WINDOW.context_start_us + WINDOW.gap_us
  assert uncertain_sessions(WINDOW, [session('k', start, start + 30 * HOUR_US)]) == 0


def test_a_chain_without_pause_from_the_context_edge_into_the_day_is_uncertain():
  # A crawler active non-stop: sessions cut by the 24 h cap, no pause between.
  start = WINDOW.context_start_us + 60_000_000
  chain = [
    session('bot', start + n * 24 * HOUR_US, start + (n + 1) * 24 * HOUR_US - 60_000_000)
    for n in range(3)
  ]
  # The first ends before the day; the second (from 23:31 on Mar 1) and the third
  # touch it, and where they start depends on where the chain began.
  assert uncertain_sessions(WINDOW, list(reversed(chain))) == 2
  assert uncertain_sessions(WINDOW, chain[:1]) == 0
