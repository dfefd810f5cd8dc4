"""The event-time and watermark rule shared by the Kinesis and Kafka readers."""

from __future__ import annotations

import time

from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.io.stream_watermark import SplitProgress, advance, unit_watermark

ARRIVAL_US = 1_772_362_800_000_000
HOUR_US = 3_600_000_000
S = 1_000_000


def test_a_record_is_timed_by_its_event_time_never_after_its_arrival_as_progress():
  split = SplitProgress()
  assert split.element_time(ARRIVAL_US - 5 * S, ARRIVAL_US).micros == ARRIVAL_US - 5 * S
  assert split.newest_event_us == ARRIVAL_US - 5 * S and split.newest_delay_us == 5 * S
  # An hour ahead is a clock a little off, not a broken one: its own time, but
  # as progress no further than its arrival.
  assert split.element_time(ARRIVAL_US + HOUR_US, ARRIVAL_US).micros == ARRIVAL_US + HOUR_US
  assert split.newest_event_us == ARRIVAL_US


def test_a_clock_far_ahead_is_timed_where_its_split_stands_and_moves_nothing():
  split = SplitProgress()
  split.element_time(ARRIVAL_US - 5 * S, ARRIVAL_US)
  stamp = split.element_time(ARRIVAL_US + 25 * HOUR_US, ARRIVAL_US)
  assert stamp.micros == ARRIVAL_US - 5 * S
  assert split.newest_event_us == ARRIVAL_US - 5 * S
  # With nothing read before it, it is timed at its arrival.
  assert SplitProgress().element_time(ARRIVAL_US + 25 * HOUR_US, ARRIVAL_US).micros == ARRIVAL_US


def test_no_event_time_means_the_arrival_time():
  assert SplitProgress().element_time(None, ARRIVAL_US).micros == ARRIVAL_US


def read(newest_us: int, delay_us: int = 0, caught_up_since=None) -> SplitProgress:
  return SplitProgress(newest_us, delay_us, caught_up_since)


def test_the_watermark_is_the_slowest_busy_split_less_the_bound():
  now = time.monotonic()
  busy = [read(ARRIVAL_US), read(ARRIVAL_US - 10 * S)]
  idle = read(ARRIVAL_US - 99 * HOUR_US, caught_up_since=now - 10)
  watermark = unit_watermark([*busy, idle], [*busy, idle], now, 5.0, 60.0)
  assert watermark.micros == ARRIVAL_US - 70 * S  # the idle split holds nothing back


def test_a_split_caught_up_for_less_than_the_timeout_still_holds():
  now = time.monotonic()
  splits = [read(ARRIVAL_US), read(ARRIVAL_US - 10 * S, caught_up_since=now - 1)]
  assert unit_watermark(splits, splits, now, 5.0, 60.0).micros == ARRIVAL_US - 70 * S


def test_a_unit_that_never_read_follows_the_clock():
  now = time.monotonic()
  quiet = [SplitProgress(caught_up_since=now - 10)]
  before_us = int(time.time() * S)
  watermark = unit_watermark(quiet, quiet, now, 5.0, 60.0)
  assert before_us - 60 * S <= watermark.micros <= int(time.time() * S) - 60 * S


def test_a_quiet_live_unit_follows_the_clock_and_a_quiet_replay_its_newest_event():
  now = time.monotonic()
  live_us = int(time.time() * S) - 2 * S
  live = [read(live_us, delay_us=2 * S, caught_up_since=now - 10)]
  assert unit_watermark(live, live, now, 5.0, 60.0).micros >= live_us - 60 * S + 2 * S
  replay = [read(ARRIVAL_US - 365 * 24 * HOUR_US, delay_us=365 * 24 * HOUR_US, caught_up_since=0)]
  assert unit_watermark(replay, replay, now, 5.0, 60.0).micros == replay[0].newest_event_us - 60 * S


def test_finished_splits_count_for_a_quiet_unit_but_do_not_hold_a_busy_one():
  now = time.monotonic()
  finished = read(ARRIVAL_US - HOUR_US, delay_us=HOUR_US)
  busy = read(ARRIVAL_US)
  assert unit_watermark([busy], [busy, finished], now, 5.0, 60.0).micros == ARRIVAL_US - 60 * S
  quiet = read(ARRIVAL_US - 2 * HOUR_US, delay_us=HOUR_US, caught_up_since=0)
  watermark = unit_watermark([quiet], [quiet, finished], now, 5.0, 60.0)
  assert watermark.micros == ARRIVAL_US - HOUR_US - 60 * S


def test_a_unit_with_nothing_known_leaves_the_watermark_alone():
  now = time.monotonic()
  waiting = [SplitProgress()]  # polled, nothing read, not caught up yet
  assert unit_watermark(waiting, waiting, now, 5.0, 60.0) is None


def test_the_estimator_only_moves_forward():
  estimator = ManualWatermarkEstimator(None)
  advance(estimator, Timestamp(micros=ARRIVAL_US))
  advance(estimator, Timestamp(micros=ARRIVAL_US - S))
  advance(estimator, None)
  assert estimator.current_watermark().micros == ARRIVAL_US
  advance(estimator, Timestamp(micros=ARRIVAL_US + S))
  assert estimator.current_watermark().micros == ARRIVAL_US + S
