"""The run summary: per-source accounting from the run's counters, checked.

Shape (docs/design.md, "Accounting")::

    {"sources": {"access-log:/data/access.log": {"read": 10000, "clean": 6100,
       "dead_letter": 1, "duplicate": 0, "filtered": 3899}},
     "totals": {...same keys...},
     "tables": {"events": 6100, "sessions": 812, "dead_letter": 1}}

Reason counters (why records were filtered or dead-lettered) go to
``_run_metrics.json`` beside it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from transforms import accounting

_LOGGER = logging.getLogger(__name__)

SUMMARY_FILE = '_summary.json'
METRICS_FILE = '_run_metrics.json'
_COLUMNS = (accounting.READ,) + accounting.OUTCOMES


class AccountingError(RuntimeError):
  """Records went missing or were counted twice: a bug, never bad input."""


def committed_counters(result) -> dict[str, int]:
  """``name -> value`` of the shopstream counters of a finished pipeline."""
  query = result.metrics().query(MetricsFilter().with_namespace(accounting.NAMESPACE))
  totals: dict[str, int] = {}
  for counter in query['counters']:
    value = counter.committed if counter.committed is not None else counter.attempted
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
  return totals


def build_summary(counters: dict[str, int], tables: Iterable[str]) -> dict:
  sources: dict[str, dict[str, int]] = {}
  table_rows = {table: 0 for table in tables}
  for name, value in counters.items():
    kind, _, subject = name.partition(accounting.SEPARATOR)
    if kind in _COLUMNS:
      sources.setdefault(subject, dict.fromkeys(_COLUMNS, 0))[kind] += value
    elif kind == accounting.TABLE_ROWS:
      table_rows[subject] = table_rows.get(subject, 0) + value
  totals = dict.fromkeys(_COLUMNS, 0)
  for row in sources.values():
    for column in _COLUMNS:
      totals[column] += row[column]
  if not totals[accounting.OTHER_DAY]:  # only a backfill's day runs have it
    for row in (totals, *sources.values()):
      del row[accounting.OTHER_DAY]
  return {'sources': dict(sorted(sources.items())), 'totals': totals, 'tables': table_rows}


def reasons(counters: dict[str, int]) -> dict[str, dict[str, int]]:
  """Every counter the summary does not show, by kind: reasons, unknown products..."""
  found: dict[str, dict[str, int]] = {}
  for name, value in sorted(counters.items()):
    kind, _, subject = name.partition(accounting.SEPARATOR)
    if kind not in _COLUMNS and kind != accounting.TABLE_ROWS:
      found.setdefault(kind, {})[subject] = value
  return found


def unbalanced_sources(summary: dict) -> dict[str, dict[str, int]]:
  """Sources whose read count is not clean + dead_letter + duplicate + filtered."""
  return {
    source: row
    for source, row in summary['sources'].items()
    if row[accounting.READ] != sum(row.get(o, 0) for o in accounting.OUTCOMES)
  }


def write_json(path: str, content: dict) -> None:
  with FileSystems.create(path) as f:
    f.write(json.dumps(content, indent=2, sort_keys=False).encode() + b'\n')


def check_accounting(summary: dict) -> None:
  broken = unbalanced_sources(summary)
  if broken:
    raise AccountingError(
      f'records read != clean + dead_letter + duplicate + filtered (+ other_day): {broken}'
    )
