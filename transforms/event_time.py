"""Event-time parsing: ISO-8601 with offset or epoch numbers to UTC microseconds.

>>> parse_event_time('2026-03-01T12:00:00+01:00')
1772362800000000
>>> parse_event_time(1772362800)
1772362800000000
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.event_batches import as_numpy
from transforms.fixed_fields import days_from_civil, number_at, string_bytes

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
# Epoch numbers above this are milliseconds: as seconds it would be year 5138.
MILLIS_THRESHOLD = 100_000_000_000

# Anything outside [MIN_PLAUSIBLE, now + MAX_FUTURE] is an absurd timestamp:
# web commerce did not exist before 1995, and clocks a day ahead are broken.
MIN_PLAUSIBLE_US = 788_918_400 * US_PER_SECOND  # 1995-01-01T00:00:00Z
MAX_FUTURE_US = 86_400 * US_PER_SECOND
CLOCK_SKEW = 'clock_skew'


class EventTimeError(ValueError):
  """The value is not a usable event time; ``code`` names the reason."""

  def __init__(self, code: str, message: str):
    super().__init__(message)
    self.code = code


def parse_event_time(value: object) -> int:
  """Returns UTC microseconds for an ISO-8601 string or epoch s/ms number.

  Raises EventTimeError for types, formats and naive (offset-less) strings.
  """
  if isinstance(value, bool):
    raise EventTimeError('invalid_event_time', f'event_time is a boolean: {value!r}')
  if isinstance(value, (int, float)):
    if value != value or value in (float('inf'), float('-inf')):
      raise EventTimeError('invalid_event_time', f'event_time is not finite: {value!r}')
    seconds = value / 1000 if abs(value) >= MILLIS_THRESHOLD else value
    return round(seconds * US_PER_SECOND)
  if isinstance(value, str):
    text = value.strip()
    try:
      parsed = dt.datetime.fromisoformat(text)
    except ValueError:
      # A number sent as a string is common in legacy feeds.
      try:
        return parse_event_time(float(text))
      except ValueError:
        raise EventTimeError(
          'invalid_event_time', f'event_time is not ISO-8601 or epoch: {value!r}'
        ) from None
    if parsed.tzinfo is None:
      raise EventTimeError(
        'event_time_without_offset',
        f'event_time has no UTC offset, so its instant is unknown: {value!r}',
      )
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds
  raise EventTimeError(
    'invalid_event_time', f'event_time must be a string or number, got {type(value).__name__}'
  )


def check_plausible(time_us: int, now_us: int) -> None:
  """Raises EventTimeError when a parsed time is before 1995 or in the future.

  ``now_us`` is when the record was made or arrived: the run's reference time
  in batch, a Kinesis record's arrival time in a stream. A time more than a
  day ahead of it is ``clock_skew`` (a client's clock is wrong), in both.
  """
  if time_us < MIN_PLAUSIBLE_US:
    raise EventTimeError(
      'event_time_out_of_range', f'event_time {format_us(time_us)} is before 1995'
    )
  if time_us > now_us + MAX_FUTURE_US:
    raise EventTimeError(
      CLOCK_SKEW,
      f'event_time {format_us(time_us)} is more than a day ahead of the record '
      f'({format_us(now_us)}): a clock is wrong',
    )


def format_us(time_us: int) -> str:
  """ISO-8601 text of a UTC microsecond time (for messages and partition days)."""
  try:
    return (_EPOCH + dt.timedelta(microseconds=time_us)).isoformat()
  except OverflowError:
    return f'{time_us}us'


def utc_day(time_us: int) -> str:
  """The ``YYYY-MM-DD`` UTC day a time falls in: the partition value."""
  return _day_text(time_us // US_PER_DAY)


@functools.lru_cache(maxsize=8192)
def _day_text(day_number: int) -> str:
  return (_EPOCH_DATE + dt.timedelta(days=day_number)).isoformat()


# The ISO-8601 shapes exports mostly use, at fixed positions: date T time,
# optional milliseconds, Z or a +hh:mm offset. Anything else is left to
# parse_event_time.
_COMMON_ISO = r'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?(?:Z|[+-][0-9]{2}:[0-9]{2})$'


def iso_times_us(texts) -> tuple[np.ndarray, np.ndarray]:
  """(UTC microseconds as float64, decided) for a string column: parse_event_time's value
  where a text has one of the common shapes and parse_event_time accepts it; not decided
  elsewhere (any other shape, a field out of range, a time a float64 cannot hold).
  """
  texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
  decided = as_numpy(pc.fill_null(pc.match_substring_regex(texts, _COMMON_ISO), False))
  micros = np.full(len(texts), np.nan)
  rows = np.flatnonzero(decided)
  if not len(rows):
    return micros, decided
  data, offsets = string_bytes(texts)
  start, end = offsets[rows], offsets[rows + 1]
  year, month, day = (
    number_at(data, start, 4),
    number_at(data, start + 5, 2),
    number_at(data, start + 8, 2),
  )
  hour, minute = number_at(data, start + 11, 2), number_at(data, start + 14, 2)
  second = number_at(data, start + 17, 2)
  has_fraction = data[start + 19] == ord('.')
  millis = np.where(has_fraction, number_at(data, np.where(has_fraction, start + 20, start), 3), 0)
  utc = data[end - 1] == ord('Z')
  zone = np.where(utc, start, end - 6)  # where a +hh:mm offset starts
  zone_hours, zone_minutes = number_at(data, zone + 1, 2), number_at(data, zone + 4, 2)
  offset_minutes = np.where(utc, 0, zone_hours * 60 + zone_minutes)
  offset_minutes = np.where(data[zone] == ord('-'), -offset_minutes, offset_minutes)
  days, real_date = days_from_civil(year, month, day)
  valid = (
    real_date
    & (hour <= 23)
    & (minute <= 59)
    & (second <= 59)
    & (utc | ((zone_hours <= 23) & (zone_minutes <= 59)))
  )
  seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60
  exact = seconds * US_PER_SECOND + millis * 1000
  valid &= np.abs(exact) < 2**53  # a float64 holds it (years 1685-2255)
  micros[rows] = np.where(valid, exact.astype(np.float64), np.nan)
  decided[rows] = valid
  return micros, decided
