"""Backfills: day by day equals one run over everything; reruns, single days,
kill -9 and resume, dry runs, locks and bad arguments.

The referee is the plain batch run over all the inputs: every table of a
backfill (but dead letters dated outside the range) must equal its rows, as
compared by DuckDB over the Parquet both wrote.
"""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import duckdb
import pytest

from beam_pipelines import cli
from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from beam_pipelines.io.sources import InputFile
from beam_pipelines.pipelines import backfill
from tests.conftest import sample_run_flags

DAYS = ('2026-03-01', '2026-03-02', '2026-03-03')
TABLES = ('events', 'sessions', 'orders', 'order_lines', 'dead_letter')
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module', autouse=True)
def _salt(module_salt):
  pass


@pytest.fixture(scope='module')
def inputs(tmp_path_factory) -> list[str]:
  return sample_run_flags(tmp_path_factory.mktemp('inputs'), seed=11)


@pytest.fixture(scope='module')
def full_run(inputs, tmp_path_factory) -> str:
  """The referee: one batch run over all the inputs."""
  output = str(tmp_path_factory.mktemp('full'))
  assert cli.main(['run', *inputs, '--output', output]) == 0
  return output


@pytest.fixture(scope='module')
def range_backfill(inputs, tmp_path_factory) -> str:
  output = str(tmp_path_factory.mktemp('range'))
  assert (
    cli.main(['backfill', '--from', DAYS[0], '--to', DAYS[-1], *inputs, '--output', output]) == 0
  )
  return output


def rows(output: str, table: str, days=DAYS) -> list[tuple]:
  if not glob.glob(f'{output}/{table}/*/*.parquet'):
    return []  # no day of the table has rows
  day_list = ', '.join(f"'{day}'" for day in days)
  return (
    duckdb.connect()
    .execute(
      f"select * from read_parquet('{output}/{table}/*/*.parquet', hive_partitioning = true, "
      f'union_by_name = true) where dt::varchar in ({day_list}) order by all'
    )
    .fetchall()
  )


def assert_same_tables(a: str, b: str, days=DAYS) -> None:
  for table in TABLES:
    assert rows(a, table, days) == rows(b, table, days), table


def backfill_args(inputs, output, first=DAYS[0], last=DAYS[-1]) -> list[str]:
  return ['backfill', '--from', first, '--to', last, *inputs, '--output', str(output)]


def test_a_backfill_gives_the_rows_of_one_run_over_everything(full_run, range_backfill):
  assert len(rows(full_run, 'events')) > 1000
  assert len(rows(full_run, 'orders')) > 20
  assert_same_tables(full_run, range_backfill)
  crossing = (
    duckdb.connect()
    .execute(
      f"select count(*) from read_parquet('{range_backfill}/sessions/*/*.parquet') "
      'where session_start::date <> session_end::date'
    )
    .fetchone()[0]
  )
  assert crossing > 0  # the data has sessions across midnight
  manifest = backfill.read_manifest(backfill.default_state_dir(range_backfill))
  assert {day: entry['state'] for day, entry in manifest['days'].items()} == dict.fromkeys(
    DAYS, 'done'
  )
  assert sum(manifest['days'][day]['tables']['events'] for day in DAYS) == len(
    rows(full_run, 'events')
  )
  assert not os.path.exists(os.path.join(range_backfill, '_staging'))
  assert not os.path.exists(os.path.join(range_backfill, '_backfill', 'lock'))


def test_one_day_alone_is_that_day_of_the_full_range(inputs, range_backfill, tmp_path):
  assert cli.main(backfill_args(inputs, tmp_path, DAYS[1], DAYS[1])) == 0
  assert sorted(os.listdir(tmp_path / 'events')) == [f'dt={DAYS[1]}']
  assert_same_tables(range_backfill, str(tmp_path), [DAYS[1]])


def test_a_second_run_skips_done_days_and_changed_inputs_redo_them(
  inputs, range_backfill, tmp_path, capsys
):
  # Into a copy of the finished backfill: the module's one stays as it was.
  output = tmp_path / 'copy'
  subprocess.run(['cp', '-a', range_backfill, str(output)], check=True)
  assert cli.main(backfill_args(inputs, output)) == 0
  assert capsys.readouterr().out.count('skipped: done, inputs unchanged') == 3
  assert_same_tables(range_backfill, str(output))

  # A touched input changes the fingerprint: every day is redone (two at once
  # here), each day's partitions replaced whole: the tables stay identical.
  catalog = next(a.split('=', 1)[1] for a in inputs if a.startswith('catalog-csv='))
  original = os.stat(catalog)
  os.utime(catalog, (time.time(), time.time()))
  try:
    assert cli.main([*backfill_args(inputs, output), '--parallel', '2']) == 0
  finally:  # the other tests share the inputs
    os.utime(catalog, ns=(original.st_atime_ns, original.st_mtime_ns))
  out = capsys.readouterr().out
  assert out.count(' done in ') == 3 and 'skipped: done' not in out
  assert_same_tables(range_backfill, str(output))


def test_killed_with_sigkill_and_resumed_equals_a_clean_run(inputs, range_backfill, tmp_path):
  output = tmp_path / 'killed'
  command = [sys.executable, '-m', 'beam_pipelines.cli', *backfill_args(inputs, output)]
  process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  manifest_path = output / '_backfill' / 'manifest.json'
  deadline = time.monotonic() + 120
  # Kill while the second day runs, once it has staged files: the first day is
  # done, the second half-done. (A fixed delay after 'running' raced a fast day.)
  while time.monotonic() < deadline:
    if manifest_path.exists():
      days = json.loads(manifest_path.read_text())['days']
      if days.get(DAYS[1], {}).get('state') == 'running' and staged_files(output):
        break
    time.sleep(0.02)
  else:
    pytest.fail('the backfill never staged files of its second day')
  process.send_signal(signal.SIGKILL)
  process.wait()
  states = {d: e['state'] for d, e in json.loads(manifest_path.read_text())['days'].items()}
  assert states[DAYS[0]] == 'done' and states[DAYS[1]] == 'running'
  assert (output / '_backfill' / 'lock').exists()  # left behind by the dead process

  resumed = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr
  assert f'{DAYS[0]} skipped' in resumed.stdout
  assert f'{DAYS[1]} done' in resumed.stdout and f'{DAYS[2]} done' in resumed.stdout
  assert_same_tables(range_backfill, str(output))
  assert not (output / '_staging').exists()


def test_dry_run_prints_the_plan_and_changes_nothing(inputs, range_backfill, tmp_path, capsys):
  fresh = tmp_path / 'fresh'
  assert cli.main([*backfill_args(inputs, fresh), '--dry-run']) == 0
  out = capsys.readouterr().out
  assert not fresh.exists()
  assert all(f'{day}  run   new; reads' in out for day in DAYS) and 'access.log' in out

  before = snapshot(range_backfill)
  assert (
    cli.main([*backfill_args(inputs, range_backfill, '2026-02-28', DAYS[-1]), '--dry-run']) == 0
  )
  out = capsys.readouterr().out
  assert '2026-02-28  run   new' in out and f'{DAYS[0]}  skip  done' in out
  assert snapshot(range_backfill) == before


def staged_files(output) -> list:
  staging = output / '_staging'
  return [f for f in staging.rglob('*') if f.is_file()] if staging.exists() else []


def snapshot(folder: str) -> dict[str, float]:
  return {
    os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
    for root, _, names in os.walk(folder)
    for name in names
  }


def test_bad_ranges_missing_inputs_and_a_held_lock_are_clear_errors(inputs, tmp_path, capsys):
  output = tmp_path / 'out'
  assert cli.main(backfill_args(inputs, output, DAYS[2], DAYS[0])) == 2
  assert 'is before --from' in capsys.readouterr().err
  assert cli.main(backfill_args(inputs, output, '2026-02-30', DAYS[0])) == 2
  assert 'YYYY-MM-DD' in capsys.readouterr().err
  missing = ['--source', f'access-log={tmp_path}/nope.log', '--output', str(output)]
  assert cli.main(['backfill', '--from', DAYS[0], '--to', DAYS[0], *missing]) == 2
  assert 'no file matches' in capsys.readouterr().err
  assert not output.exists()

  # A live process (this one) holds the lock: a second backfill must not start.
  lock = backfill.acquire_lock(backfill.default_state_dir(str(output)))
  assert cli.main(backfill_args(inputs, output)) == 2
  assert 'another backfill holds' in capsys.readouterr().err
  os.remove(lock)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
  dead = subprocess.run(
    [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True
  )
  os.makedirs(tmp_path / '_backfill')
  (tmp_path / '_backfill' / 'lock').write_text(
    json.dumps({'host': socket.gethostname(), 'pid': int(dead.stdout), 'since': 'earlier'})
  )
  path = backfill.acquire_lock(backfill.default_state_dir(str(tmp_path)))
  assert json.loads(open(path).read())['pid'] == os.getpid()


def test_plan_days_from_the_manifest():
  manifest = {
    'days': {
      '2026-03-01': {'state': 'done', 'fingerprint': 'f1'},
      '2026-03-02': {'state': 'done', 'fingerprint': 'old'},
      '2026-03-03': {'state': 'running', 'fingerprint': 'f1'},
    }
  }
  days = ['2026-03-01', '2026-03-02', '2026-03-03', '2026-03-04']
  plans = backfill.plan_days(days, manifest, dict.fromkeys(days, 'f1'))
  assert [(p.action, p.why) for p in plans] == [
    ('skip', 'done'),
    ('run', 'inputs or settings changed'),
    ('run', 'unfinished (running)'),
    ('run', 'new'),
  ]


def test_the_fingerprint_follows_inputs_and_settings_but_not_progress():
  files = [InputFile('access-log', '/a.log', 10, 1)]
  base = backfill.fingerprint(files, ['--session_gap_minutes=30', '--progress=never'])
  assert base == backfill.fingerprint(files, ['--progress=auto', '--session_gap_minutes=30'])
  assert base != backfill.fingerprint(files, ['--session_gap_minutes=20'])
  assert base != backfill.fingerprint([files[0]._replace(mtime_us=2)], ['--session_gap_minutes=30'])


@pytest.mark.parametrize('seed', [1, 2])
def test_killed_at_a_random_moment_and_resumed_equals_a_clean_run(
  inputs, range_backfill, tmp_path, seed
):
  """Kill -9 at a random point of the whole run (start-up, a day, a publish, the derive)."""
  output = tmp_path / 'killed'
  command = [sys.executable, '-m', 'beam_pipelines.cli', *backfill_args(inputs, output)]
  delay = random.Random(seed).uniform(0.5, 12.0)  # a clean run takes ~12 s here
  process = subprocess.Popen(
    command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )
  try:
    process.wait(timeout=delay)
  except subprocess.TimeoutExpired:
    process.send_signal(signal.SIGKILL)
    process.wait()
  resumed = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr
  assert_same_tables(range_backfill, str(output))
  assert not (output / '_staging').exists()
  assert not (output / '_backfill' / 'lock').exists()


def test_a_day_reads_only_the_daily_files_that_reach_its_context(tmp_path, capsys):
  generate(GeneratorConfig(output_dir=str(tmp_path / 'in'), events=1500, days=5, seed=8))
  sources = [
    '--source',
    f'events-jsonl={tmp_path}/in/events-*.jsonl.gz',
    '--reference-time',
    '2026-06-01T00:00:00Z',
    '--progress',
    'never',
    '--derived-tables',
    'never',
  ]
  argv = ['backfill', '--from', '2026-03-01', '--to', '2026-03-05', *sources]
  assert cli.main([*argv, '--output', str(tmp_path / 'out'), '--dry-run']) == 0
  plan = capsys.readouterr().out
  first_day = plan[plan.index('2026-03-01  run') : plan.index('2026-03-02  run')]
  assert 'events-2026-03-01' in first_day and 'events-2026-03-02' in first_day
  # 03-03 starts after the context of 03-01 ends; 03-05 reaches only itself and
  # the year 2999 (a dirty line). (03-04 holds a dirty line dated 03-01.)
  assert 'events-2026-03-03' not in first_day and 'events-2026-03-05' not in first_day

  # Pruned, a day still equals that day of one run over every file.
  assert cli.main(['run', *sources, '--output', str(tmp_path / 'full')]) == 0
  one_day = ['backfill', '--from', '2026-03-03', '--to', '2026-03-03', *sources]
  assert cli.main([*one_day, '--output', str(tmp_path / 'day')]) == 0
  for table in ('events', 'sessions'):
    assert rows(str(tmp_path / 'day'), table, ['2026-03-03']) == rows(
      str(tmp_path / 'full'), table, ['2026-03-03']
    ), table
  manifest = backfill.read_manifest(backfill.default_state_dir(str(tmp_path / 'day')))
  assert len(manifest['days']['2026-03-03']['inputs']) == 4  # of 5 daily files
  assert len(manifest['spans']) == 5
