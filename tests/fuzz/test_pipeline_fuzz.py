"""Fuzz the whole batch pipeline: mutated inputs never crash a run, and every
run's accounting holds (read = clean + dead_letter + duplicate + filtered,
checked by the run itself) with the tables agreeing with the summary.
"""

from __future__ import annotations

import io
import os
import re
import tempfile

import duckdb
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from beam_pipelines.io.csv_records import csv_record_arrays
from beam_pipelines.io.sources import line_arrays
from beam_pipelines.pipelines import batch_pipeline
from beam_pipelines.pipelines.runner_config import IN_PROCESS_RUNNER
from tests.fuzz.test_parsers_fuzz import PARSERS, mutated


def lines(kind: str):
  return st.lists(
    st.one_of(mutated(PARSERS[kind][1]), st.sampled_from(PARSERS[kind][1])), max_size=25
  )


# Each example is a Beam run (~2 s): few examples, and no shrinking (a failure
# is reported as found).
@settings(
  max_examples=6,
  deadline=None,
  suppress_health_check=list(HealthCheck),
  phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(events=lines('events-jsonl'), hits=lines('access-log'), orders=lines('orders-csv'))
def test_mutated_inputs_never_break_a_run_or_its_accounting(events, hits, orders):
  with tempfile.TemporaryDirectory() as folder:
    inputs = {'events-jsonl': events, 'access-log': hits, 'orders-csv': orders}
    records_in_file = {}
    for kind, content in inputs.items():
      data = b'\n'.join(content) + (b'\n' if content else b'')
      records_in_file[kind] = records_in(kind, data)
      with open(f'{folder}/{kind}.txt', 'wb') as f:
        f.write(data)
    summary = batch_pipeline.run(
      [
        f'--runner={IN_PROCESS_RUNNER}',
        *(f'--source={kind}={folder}/{kind}.txt' for kind in inputs),
        f'--output={folder}/out',
        '--reference_time=2026-06-01T00:00:00Z',
        '--progress=never',
      ]
    )
    for kind in inputs:
      row = summary['sources'].get(f'{kind}:{folder}/{kind}.txt', {'read': 0})
      assert row['read'] == records_in_file[kind]  # every record read, and accounted by the run
    written = (
      duckdb.connect()
      .execute(f"select count(*) from read_parquet('{folder}/out/events/*/*.parquet')")
      .fetchone()[0]
      if summary['tables']['events']
      else 0
    )
    assert written == summary['tables']['events']
    assert_only_expected_paths(f'{folder}/out')


def records_in(kind: str, data: bytes) -> int:
  """Lines (mutations can hold newlines too); for orders-csv, CSV records, which a quoted
  line break joins (csv_records.py, held to Python's csv module by its own tests)."""
  if kind != 'orders-csv':
    return data.count(b'\n')
  arrays = list(csv_record_arrays(line_arrays(io.BytesIO(data))))
  assert sum(array.lines for array in arrays) == data.count(b'\n')
  return sum(len(array.records) for array in arrays)


TABLE_NAMES = {'events', 'sessions', 'orders', 'order_lines', 'dead_letter'}
DAY = re.compile(r'dt=\d{4}-\d{2}-\d{2}')


def assert_only_expected_paths(output: str) -> None:
  """Nothing from the input data shapes a path: tables, dt=YYYY-MM-DD, part files."""
  for root, folders, files in os.walk(output):
    depth = os.path.relpath(root, output).count(os.sep) + (root != output)
    for name in folders:
      assert (name in TABLE_NAMES) if depth == 0 else DAY.fullmatch(name), (root, name)
    for name in files:
      if depth == 0:
        assert name in ('_summary.json', '_run_metrics.json'), name
      else:
        assert depth == 2 and name.startswith('part-') and name.endswith('.parquet'), name
