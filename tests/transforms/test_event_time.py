import pytest

from transforms.event_time import (
  EventTimeError,
  check_plausible,
  format_us,
  parse_event_time,
  utc_day,
)

NOON_UTC = 1_772_366_400_000_000  # 2026-03-01T12:00:00Z


@pytest.mark.parametrize(
  'value',
  [
    '2026-03-01T12:00:00Z',
    '2026-03-01T13:00:00+01:00',
    '2026-03-01T07:00:00-05:00',
    ' 2026-03-01T12:00:00.000Z ',
    1_772_366_400,
    1_772_366_400.0,
    1_772_366_400_000,
    '1772366400',
  ],
)
def test_every_accepted_form_gives_the_same_instant(value):
  assert parse_event_time(value) == NOON_UTC


def test_sub_second_precision_is_kept():
  assert parse_event_time('2026-03-01T12:00:00.123456Z') == NOON_UTC + 123_456
  assert parse_event_time(1_772_366_400_123) == NOON_UTC + 123_000


@pytest.mark.parametrize(
  'value,code',
  [
    ('2026-03-01T12:00:00', 'event_time_without_offset'),
    ('yesterday', 'invalid_event_time'),
    (True, 'invalid_event_time'),
    (float('nan'), 'invalid_event_time'),
    ({'t': 1}, 'invalid_event_time'),
  ],
)
def test_unusable_values_are_rejected_with_a_reason(value, code):
  with pytest.raises(EventTimeError) as e:
    parse_event_time(value)
  assert e.value.code == code


def test_plausibility_window():
  check_plausible(NOON_UTC, now_us=NOON_UTC)
  with pytest.raises(EventTimeError, match='before 1995'):
    check_plausible(parse_event_time('1990-01-01T00:00:00Z'), now_us=NOON_UTC)
  with pytest.raises(EventTimeError):
    check_plausible(NOON_UTC + 2 * 86_400 * 1_000_000, now_us=NOON_UTC)


def test_partition_day_and_format():
  assert utc_day(NOON_UTC) == '2026-03-01'
  assert utc_day(parse_event_time('2026-03-01T23:59:59.999999-00:00')) == '2026-03-01'
  assert utc_day(parse_event_time('2026-03-02T00:30:00+01:00')) == '2026-03-01'
  assert format_us(NOON_UTC) == '2026-03-01T12:00:00+00:00'
