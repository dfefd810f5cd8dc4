"""Run accounting: the Beam counters behind the run summary.

Every record read is counted once as read and once as exactly one of clean,
dead_letter, duplicate or filtered (or, in a backfill's day run, other_day:
it belongs to another day), per source; the summary checks that
read = clean + dead_letter + duplicate + filtered + other_day. Counter names are
``"<outcome>|<source>"``; reasons and table rows have counters of their own.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

NAMESPACE = 'shopstream'

READ = 'read'
CLEAN = 'clean'
DEAD_LETTER = 'dead_letter'
DUPLICATE = 'duplicate'
FILTERED = 'filtered'
OTHER_DAY = 'other_day'
OUTCOMES = (CLEAN, DEAD_LETTER, DUPLICATE, FILTERED, OTHER_DAY)

FILTERED_REASON = 'filtered_reason'
DEAD_LETTER_REASON = 'dead_letter_reason'
TABLE_ROWS = 'table_rows'

SEPARATOR = '|'

# Metrics.counter() builds a name object per call; the returned counter looks
# its cell up at inc() time, so one object per name serves every bundle.
_COUNTERS: dict[str, object] = {}


def count(kind: str, subject: str, n: int = 1) -> None:
  """Adds n to the counter ``kind|subject`` (subject: a source, reason or table)."""
  name = kind + SEPARATOR + subject
  counter = _COUNTERS.get(name)
  if counter is None:
    counter = _COUNTERS[name] = Metrics.counter(NAMESPACE, name)
  counter.inc(n)  # type: ignore[attr-defined]


class Counts(dict):
  """Counts by (kind, subject) in memory: a bundle's, or what a worker thread counted
  for one (Beam's counters belong to the bundle's own thread)."""

  def count(self, kind: str, subject: str, n: int = 1) -> None:
    key = (kind, subject)
    self[key] = self.get(key, 0) + n


class CountingDoFn(beam.DoFn):
  """A DoFn that counts in memory and adds its counts once per bundle.

  Counting per record costs more than most of the work on a record; a bundle's
  counts are committed with the bundle either way.
  """

  def start_bundle(self):
    self._counts = Counts()

  def count(self, kind: str, subject: str, n: int = 1) -> None:
    self._counts.count(kind, subject, n)

  def add_counts(self, counts: Counts) -> None:
    for (kind, subject), n in counts.items():
      self._counts.count(kind, subject, n)

  def finish_bundle(self):
    for (kind, subject), n in self._counts.items():
      count(kind, subject, n)
    self._counts = Counts()
