"""Event times and the watermark of a stream reader's unit of work.

Shared by the Kinesis and Kafka readers, so that both streams time their
records and hold their watermark by one rule. A unit reads splits (Kinesis
shards, Kafka partitions); each split keeps a SplitProgress:

- A record's element time is its event time, never later than its arrival
  (the stream's own timestamp). A record more than ``MAX_FUTURE_US`` ahead of
  its arrival, a client clock gone wrong, moves nothing and is timed where its
  split stands, so that its dead letter is written with the rows around it
  and not in a window of 2100.
- The unit's watermark is the minimum over its splits that are not idle of
  the newest event time read less the out-of-order bound; a split caught up
  for ``idle_timeout_s`` holds nothing back. A unit all idle follows the
  clock (now less the bound) if it never read a record or if its newest
  records were live (event time within the bound of arrival), so that a quiet
  split does not hold the stream back nor a quiet live stream its last
  sessions; one whose newest records were history (a replay) stands at the
  newest time it read less the bound, since its next records follow its own
  order, not the clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from transforms.event_time import MAX_FUTURE_US


@dataclass
class SplitProgress:
  """How far one shard or partition has been read, in event time."""

  newest_event_us: Optional[int] = None
  # How far that newest record's event time trailed its arrival: small for a
  # live stream, months for history put into a stream (a replay).
  newest_delay_us: int = 0
  caught_up_since: Optional[float] = None  # time.monotonic() when it ran out of records

  def idle(self, now: float, timeout_s: float) -> bool:
    """Caught up, with nothing new, for ``timeout_s`` seconds."""
    return self.caught_up_since is not None and now - self.caught_up_since >= timeout_s

  def caught_up(self, now: float) -> None:
    self.caught_up_since = self.caught_up_since or now

  def element_time(self, event_us: Optional[int], arrival_us: int) -> Timestamp:
    """The element timestamp of a record read (``event_us`` None: its arrival); records
    it as progress unless its clock is far ahead."""
    self.caught_up_since = None
    event_us = event_us or arrival_us
    if event_us <= arrival_us + MAX_FUTURE_US:
      progress_us = min(event_us, arrival_us)
      if self.newest_event_us is None or progress_us > self.newest_event_us:
        self.newest_event_us = progress_us
        self.newest_delay_us = arrival_us - progress_us
    else:
      event_us = self.newest_event_us or arrival_us
    return Timestamp(micros=max(event_us, MIN_TIMESTAMP.micros + 1))


def unit_watermark(
  polled: Iterable[SplitProgress],
  owned: Iterable[SplitProgress],
  now: float,
  idle_timeout_s: float,
  max_out_of_order_s: float,
) -> Optional[Timestamp]:
  """The unit's watermark by the rule above, or None to leave it where it is.

  ``polled``: the splits read now; ``owned``: every split of the unit read
  so far, finished ones included.
  """
  lag_us = int(max_out_of_order_s * 1_000_000)
  polled = list(polled)
  holding = [
    s.newest_event_us - lag_us
    for s in polled
    if s.newest_event_us is not None and not s.idle(now, idle_timeout_s)
  ]
  if not holding and all(s.idle(now, idle_timeout_s) for s in polled):
    seen = [s for s in owned if s.newest_event_us is not None]
    clock_us = int(time.time() * 1_000_000) - lag_us
    if not seen:
      # Nothing ever read: its records, when they come, arrive from now on.
      holding = [clock_us]
    elif all(s.newest_delay_us <= lag_us for s in seen):
      # A live stream gone quiet: what comes next arrives from now on, its
      # events at most the out-of-order bound behind. Without this the last
      # minute of a quiet live stream waited for the next record (seen on
      # Flink: no session of a burst came out in 10 minutes).
      holding = [max(max(s.newest_event_us for s in seen) - lag_us, clock_us)]
    else:
      holding = [max(s.newest_event_us for s in seen) - lag_us]
  return Timestamp(micros=min(holding)) if holding else None


def advance(estimator, candidate: Optional[Timestamp]) -> None:
  """Moves a ManualWatermarkEstimator forward to ``candidate``, never back."""
  current = estimator.current_watermark()
  if candidate is not None and (current is None or candidate > current):
    estimator.set_watermark(candidate)
