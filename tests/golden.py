"""Golden-file helpers: a parser's outcome for every line of a fixture.

Set UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change,
then read the diff before committing it.
"""

from __future__ import annotations

import json
import os

from tests.conftest import fixture_path
from transforms.dead_letters import RecordError, RecordFiltered, check_size
from transforms.records import RawRecord


def outcomes(parse, fixture: str, source: str) -> list[dict]:
  """What the parse function makes of each line: an event, a filter or an error."""
  results = []
  with open(fixture_path(fixture), 'rb') as f:
    for position, line in enumerate(f, 1):
      record = RawRecord(source, position, line.rstrip(b'\r\n'), 0)
      try:
        check_size(record)
        results.append({'line': position, 'event': parse(record)._asdict()})
      except RecordFiltered as filtered:
        results.append({'line': position, 'filtered': filtered.reason})
      except RecordError as error:
        results.append(
          {
            'line': position,
            'dead_letter': error.reason,
            'detail': str(error),
            'event_time': error.event_time,
          }
        )
  return results


def assert_matches_golden(actual: list[dict] | dict, golden: str) -> None:
  path = fixture_path(golden)
  if os.environ.get('UPDATE_GOLDEN'):
    with open(path, 'w') as f:
      json.dump(actual, f, indent=1, sort_keys=True)
      f.write('\n')
  with open(path) as f:
    expected = json.load(f)
  assert json.loads(json.dumps(actual)) == expected
