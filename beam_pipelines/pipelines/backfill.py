"""Backfills: the batch pipeline day by day over a date range, resumable.

    shopstream backfill --from 2026-03-01 --to 2026-03-31 \\
      --source events-jsonl='archive/*.jsonl.gz' --output tables/ [--parallel 2]

Each UTC day is one run of the batch pipeline with ``--day`` (see
transforms/day_window.py for how a day's sessions come out as in one run over
everything): it reads every input, keeps the day and its context, and
replaces that day's partition of every table whole, also where it now has no
rows. So running a backfill twice gives identical tables, and a day
backfilled alone equals that day in a backfill of the whole range.

State lives under ``<output>/_backfill/`` (or ``--state-dir``, a local
folder, for an output on S3):

- ``manifest.json``: per day ``planned | running | done | failed``, the
  fingerprint of the inputs and settings it was computed from, and its
  counts. Written whole to a temporary file and renamed over the old one.
- ``lock``: who is running (host, pid, time). A second backfill on the same
  output stops with an error; a lock left by a killed process on this host
  is taken over.

Resuming after a crash or kill -9 is running the same command again: done
days whose fingerprint matches are skipped, every other day is redone (its
partitions replaced whole again). A changed input file (size or mtime)
changes every day's fingerprint: any day's context may come from any file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Optional

from beam_pipelines.io.sources import InputFile

_LOGGER = logging.getLogger(__name__)

STATE_DIR = '_backfill'
MANIFEST_FILE = 'manifest.json'
LOCK_FILE = 'lock'
MAX_DAYS = 3660
PLANNED, RUNNING, DONE, FAILED = 'planned', 'running', 'done', 'failed'
# Pipeline flags that do not change a day's rows, left out of the fingerprint.
_NOT_IN_FINGERPRINT = ('--progress', '--run_id', '--run-id', '--output')


class BackfillError(ValueError):
  """A backfill that cannot start: bad range, locked output, missing input."""


def day_range(first: str, last: str) -> list[str]:
  """Every day from ``first`` to ``last`` inclusive, as YYYY-MM-DD."""
  try:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
  except ValueError as e:
    raise BackfillError(f'--from/--to must be dates YYYY-MM-DD: {e}') from None
  if end < start:
    raise BackfillError(f'--to {last} is before --from {first}')
  count = (end - start).days + 1
  if count > MAX_DAYS:
    raise BackfillError(f'{count} days is more than {MAX_DAYS}: split the range')
  return [(start + dt.timedelta(days=n)).isoformat() for n in range(count)]


def fingerprint(files: list[InputFile], flags: list[str]) -> str:
  """What a day's rows depend on: every input (path, size, mtime) and the settings."""
  settings = sorted(f for f in flags if not f.startswith(_NOT_IN_FINGERPRINT))
  content = json.dumps(
    {'inputs': [[f.kind, f.path, f.size, f.mtime_us] for f in sorted(files)], 'settings': settings}
  )
  return hashlib.sha256(content.encode()).hexdigest()[:24]


# --- manifest -------------------------------------------------------------


def default_state_dir(output: str) -> str:
  """Where a local output keeps its backfill state; remote outputs name a local one."""
  return os.path.join(output, STATE_DIR)


def read_manifest(state: str) -> dict:
  path = os.path.join(state, MANIFEST_FILE)
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    return {'days': {}}
  except (OSError, ValueError) as e:
    raise BackfillError(f'cannot read the backfill manifest {path}: {e}') from e


def write_manifest(state: str, manifest: dict) -> None:
  """Replaces the manifest atomically: readers and a resume see old or new, never half."""
  directory = state
  os.makedirs(directory, exist_ok=True)
  temporary = os.path.join(directory, f'.{MANIFEST_FILE}.{os.getpid()}')
  with open(temporary, 'w', encoding='utf-8') as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, os.path.join(directory, MANIFEST_FILE))


# --- lock -----------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def acquire_lock(state: str, command: str = 'backfill') -> str:
  """Takes the output's lock for ``command``; BackfillError if another command holds it.

  Backfills, replays and batch runs all replace whole partitions of the same
  tables, so any two of them on one output must not overlap.
  """
  directory = state
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, LOCK_FILE)
  me = {
    'command': command,
    'host': socket.gethostname(),
    'pid': os.getpid(),
    'since': _now_text(),
  }
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = _read_lock(path)
      if holder.get('host') == me['host'] and not _pid_alive(int(holder.get('pid', -1))):
        _LOGGER.warning('taking over the lock of a process that died: %s', holder)
        os.remove(path)
        continue
      raise BackfillError(
        f'another {holder.get("command", "backfill")} holds {path} (pid {holder.get("pid")} '
        f'on {holder.get("host")} since {holder.get("since")}); wait for it, or remove the '
        'file if that run is gone'
      ) from None
    with os.fdopen(fd, 'w') as f:
      json.dump(me, f)
    return path
  raise BackfillError(f'could not take the lock {path}')


def _read_lock(path: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}  # being written right now, or damaged: treat as held by someone unknown


def _now_text() -> str:
  return dt.datetime.now(dt.UTC).isoformat(timespec='seconds')


# --- plan -----------------------------------------------------------------


@dataclasses.dataclass
class DayPlan:
  day: str
  action: str  # 'run' or 'skip'
  why: str


def plan_days(days: list[str], manifest: dict, fingerprints: dict[str, str]) -> list[DayPlan]:
  """What to do with each day given the manifest and each day's current fingerprint."""
  plans = []
  for day in days:
    entry = manifest.get('days', {}).get(day)
    if entry is None:
      plans.append(DayPlan(day, 'run', 'new'))
    elif entry.get('state') == DONE and entry.get('fingerprint') == fingerprints[day]:
      plans.append(DayPlan(day, 'skip', 'done'))
    elif entry.get('state') == DONE:
      plans.append(DayPlan(day, 'run', 'inputs or settings changed'))
    else:
      plans.append(DayPlan(day, 'run', f'unfinished ({entry.get("state")})'))
  return plans


def describe_plan(
  plans: list[DayPlan], files_by_day: dict[str, list[InputFile]], output: str
) -> Iterator[str]:
  """The lines ``--dry-run`` prints."""
  todo = [p for p in plans if p.action == 'run']
  yield f'backfill of {len(plans)} day(s) into {output}: {len(todo)} to run, '
  yield f'{len(plans) - len(todo)} done already\n'
  for p in plans:
    files = files_by_day[p.day]
    yield f'  {p.day}  {p.action:4}  {p.why}; reads {len(files)} input(s):\n'
    for f in files:
      yield f'      {f.kind:13} {f.path} ({f.size:,} bytes)\n'


@dataclasses.dataclass
class DayInputs:
  """What each day reads and runs with, and the file spans behind it."""

  files: dict[str, list[InputFile]]
  flags: dict[str, list[str]]
  fingerprints: dict[str, str]
  spans: dict  # file_key -> FileSpan, for the manifest


def day_inputs(
  days: list[str], files: list[InputFile], flags: list[str], manifest: dict
) -> DayInputs:
  """Scans the inputs' spans (reusing the manifest's) and picks each day's files."""
  from apache_beam.options.pipeline_options import PipelineOptions

  from beam_pipelines.io import input_spans
  from beam_pipelines.io.sources import record_parsers
  from beam_pipelines.pipelines.batch_pipeline import fixed_layout, reference_time_us
  from beam_pipelines.pipelines.options import ShopstreamOptions
  from transforms.day_window import day_window
  from transforms.enrich.pseudonymize import Pseudonymizer, salt_from_environment

  opts = PipelineOptions(flags).view_as(ShopstreamOptions)
  parsers = record_parsers(
    opts,
    fixed_layout(opts, files),
    Pseudonymizer(salt_from_environment()),
    reference_time_us(opts),
  )
  spans = input_spans.scan_spans(files, parsers, manifest.get('spans', {}))
  base = [flag for flag in flags if not flag.startswith('--source=')]
  result = DayInputs({}, {}, {}, spans)
  for day in days:
    window = day_window(
      dt.date.fromisoformat(day),
      opts.session_gap_minutes * 60,
      opts.max_session_hours * 3600,
      opts.lookback_hours * 3600 if opts.lookback_hours else None,
    )
    # A day no input reaches still runs, to clear what an earlier run left there.
    chosen = input_spans.files_for_day(window, files, spans) or files[:1]
    result.files[day] = chosen
    result.flags[day] = base + [f'--source={f.kind}={f.path}' for f in chosen]
    result.fingerprints[day] = fingerprint(chosen, base)
  return result


# --- run ------------------------------------------------------------------


@dataclasses.dataclass
class DayResult:
  day: str
  summary: Optional[dict]
  seconds: float
  error: Optional[str] = None


def run_day(flags: list[str], output: str, state: str, day: str) -> DayResult:
  """One day through the batch pipeline (in this process)."""
  from beam_pipelines.io.parquet_sink import remove_tree, staging_root
  from beam_pipelines.pipelines import batch_pipeline  # Beam is slow to import

  started = time.monotonic()
  run_id = f'backfill-{day}'
  remove_tree(staging_root(output, run_id))  # what a killed attempt of the day staged
  summary = batch_pipeline.run(
    [*flags, f'--day={day}', f'--run_id={run_id}'],
    summary_dir=os.path.join(state, 'days', day),
  )
  return DayResult(day, summary, time.monotonic() - started)


def remove_leftover_staging(output: str) -> None:
  """Staged files of backfill days and derives a killed backfill left behind (ours: locked)."""
  from apache_beam.io.filesystems import FileSystems

  from beam_pipelines.io.parquet_sink import STAGING_DIR, remove_tree

  staging = FileSystems.join(output, STAGING_DIR)
  if '://' in output or not os.path.isdir(staging):
    return  # object stores: each day clears its own staging before it runs
  for name in os.listdir(staging):
    if name.startswith(('backfill-', 'derive-')):
      remove_tree(os.path.join(staging, name))


def _die_with_parent() -> None:
  """Worker processes must not outlive a killed backfill and publish behind a resume."""
  try:
    import ctypes
    import signal

    libc = ctypes.CDLL('libc.so.6', use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
  except (OSError, AttributeError):  # not Linux: rely on the lock alone
    pass


def _run_day_in_worker(flags: list[str], output: str, state: str, day: str) -> DayResult:
  try:
    return run_day(flags, output, state, day)
  except Exception as e:  # reported per day; the other days go on
    _LOGGER.exception('backfill day %s failed', day)
    return DayResult(day, None, 0.0, f'{type(e).__name__}: {e}')


def execute(
  output: str,
  state: str,
  days: list[str],
  flags_by_day: dict[str, list[str]],
  fingerprints: dict[str, str],
  parallel: int,
  manifest: dict,
  on_day_done: Callable[[DayResult], None],
) -> list[DayResult]:
  """Runs the days, keeping the manifest current; returns every day's result."""
  entries = manifest.setdefault('days', {})
  for day in days:
    entries[day] = {'state': PLANNED, 'fingerprint': fingerprints[day]}
  write_manifest(state, manifest)

  def started(day: str) -> None:
    entries[day] = {
      'state': RUNNING,
      'fingerprint': fingerprints[day],
      'inputs': [
        flag.partition('=')[2] for flag in flags_by_day[day] if flag.startswith('--source=')
      ],
      'started': _now_text(),
    }
    write_manifest(state, manifest)

  def finished(result: DayResult) -> None:
    entry = entries[result.day]
    entry['finished'] = _now_text()
    entry['seconds'] = round(result.seconds, 1)
    if result.error:
      entry.update(state=FAILED, error=result.error)
    else:
      entry.update(state=DONE, totals=result.summary['totals'], tables=result.summary['tables'])
    write_manifest(state, manifest)
    on_day_done(result)

  results = []
  if parallel <= 1:
    for day in days:
      started(day)
      result = _run_day_in_worker(flags_by_day[day], output, state, day)
      finished(result)
      results.append(result)
    return results
  import multiprocessing

  context = multiprocessing.get_context('spawn')  # no fork of a process with Beam threads
  with futures.ProcessPoolExecutor(parallel, context, initializer=_die_with_parent) as pool:
    pending = {}
    for day in days:
      started(day)
      pending[pool.submit(_run_day_in_worker, flags_by_day[day], output, state, day)] = day
    for done in futures.as_completed(pending):
      result = done.result()
      finished(result)
      results.append(result)
  return results


def progress_bar(total: int, enabled: bool):
  if not (enabled and sys.stderr.isatty()):
    return None
  from tqdm import tqdm

  return tqdm(total=total, unit='day', desc='backfill', file=sys.stderr)
