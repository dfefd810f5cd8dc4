"""The full batch pipeline against a naive Beam pipeline and DuckDB (a command, not a test).

    python benchmarks/compare_peers.py --sizes 100000,1000000

For each size it generates the input once (cached in --workdir: events-jsonl
files and an access log with bots and bad lines) and runs, each in a fresh
process so that its peak RSS is its own:

- full:   shopstream's batch pipeline (parse, enrich, dedup, the session rule
          with the 24 h cap, the accounting, Parquet) on the FnApiRunner;
- naive:  the textbook Beam pipeline on the same runner: ReadFromText,
          json.loads / a regex per line, Sessions(30 min), GroupByKey, one
          dict per session, WriteToParquet;
- duckdb: the same gap-only sessions in DuckDB SQL (read_json, regex over the
          log, window functions, COPY to Parquet);
- plain:  shopstream's own functions (parse, enrich, dedup, the session rule,
          Arrow conversion, Parquet) in one plain Python loop, no Beam: the
          bound any runner of this record-at-a-time design stays under.

It prints one JSON line per run and a table with events/s, peak RSS, the
ratios full/naive and duckdb/full, and how time and memory grow with size.
With --repeat N the kinds run in N interleaved rounds (full, naive, duckdb,
full, naive, ...), so that the machine's drift touches each alike; the table
then gives each kind's median seconds with the range, and each ratio as the
median of the rounds' own ratios (a round's runs are minutes apart, not hours).
With --stage-times the in-process full run also reports where its time went:
wall and CPU seconds of each of the runner's fused stages, named by the
pipeline steps in them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GAP_S = 1800
ACCESS_LOG_RE = (
  r'^(\S+) \S+ \S+ \[([^\]]+)\] "(?:GET|POST|HEAD|PUT|DELETE) [^"]*" (\d{3}) \S+ "[^"]*" "([^"]*)"'
)


def peak_rss_mb() -> float:
  """This process's peak RSS (VmHWM).

  Not getrusage's ru_maxrss: Linux keeps that across exec, so a child of a
  parent that once held 3 GB (the 1M-event generator) reported 3 GB too (seen).
  """
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) / 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_label(stage) -> str:
  """A fused stage named by the top-level steps in it, in order ('Read events + Parse events
  + Enrich + ...'), not by the runner's nested ref_AppliedPTransform names."""
  steps = []
  for transform in stage.transforms:
    step = transform.unique_name.split('/')[0]
    if step and not step.startswith('ref_') and step not in steps:
      steps.append(step)
  return ' + '.join(steps) or stage.name


def timing_stages() -> dict[str, list[float]]:
  """Makes the in-process FnApiRunner add each bundle's wall and CPU seconds to its stage's
  [wall, cpu] in the dict returned, stages in the order they first ran. _execute_bundle is
  the runner's private method (Beam 2.62): a benchmark may lean on it, the pipeline does not."""
  from apache_beam.runners.portability.fn_api_runner import fn_runner

  totals: dict[str, list[float]] = {}
  execute = fn_runner.FnApiRunner._execute_bundle

  def timed(self, context, bundle_manager, bundle_input):
    wall, cpu = time.monotonic(), time.process_time()
    try:
      return execute(self, context, bundle_manager, bundle_input)
    finally:
      total = totals.setdefault(stage_label(bundle_manager.stage), [0.0, 0.0])
      total[0] += time.monotonic() - wall
      total[1] += time.process_time() - cpu

  fn_runner.FnApiRunner._execute_bundle = timed
  return totals


def run_full(inputs: str, output: str, beam_flags: tuple[str, ...] = ()) -> dict:
  from beam_pipelines.pipelines import batch_pipeline, runner_config

  flags = runner_config.load_runner_config(os.path.join(ROOT, 'runner_configs/direct.yaml')) + [
    f'--source=events-jsonl={inputs}/*.jsonl.gz',
    f'--source=access-log={inputs}/access.log',
    f'--output={output}',
    '--progress=never',
    '--reference-time=2026-06-01T00:00:00Z',
    *beam_flags,
  ]
  summary = batch_pipeline.run(flags)
  return {'sessions': summary['tables']['sessions'], 'lines': summary['totals']['read']}


def run_naive(inputs: str, output: str) -> dict:
  import glob
  import re
  from datetime import datetime

  import apache_beam as beam
  import pyarrow as pa
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.transforms.window import GlobalWindows, Sessions, TimestampedValue

  log_line = re.compile(ACCESS_LOG_RE)

  # Bytes in, decoded leniently: with the default UTF-8 text coder the naive
  # pipeline dies on the first invalid byte of the dirty sample (seen).
  def parse_json(line: bytes):
    try:
      record = json.loads(line)
      key = record.get('anonymous_id') or record.get('user_id')
      when = datetime.fromisoformat(record['event_time'].replace('Z', '+00:00')).timestamp()
    except (ValueError, KeyError, TypeError, AttributeError):
      return
    if key:
      yield TimestampedValue((key, when), when)

  def parse_log(line: bytes):
    match = log_line.match(line.decode('utf-8', 'replace'))
    if not match:
      return
    try:
      when = datetime.strptime(match.group(2), '%d/%b/%Y:%H:%M:%S %z').timestamp()
    except ValueError:  # the sample's impossible dates
      return
    key = f'{match.group(1)}|{match.group(4)}'
    yield TimestampedValue((key, when), when)

  def to_row(keyed, window=beam.DoFn.WindowParam):
    key, times = keyed
    times = list(times)
    return {
      'session_key': key,
      'session_start': window.start.micros,
      'session_end': max(times),
      'event_count': len(times),
    }

  schema = pa.schema(
    [
      ('session_key', pa.string()),
      ('session_start', pa.int64()),
      ('session_end', pa.float64()),
      ('event_count', pa.int64()),
    ]
  )
  # The same runner as the full pipeline's direct.yaml, named as that file names it.
  options = PipelineOptions(['--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner'])
  with beam.Pipeline(options=options) as p:
    raw = beam.coders.BytesCoder()
    events = (
      p
      | 'Json' >> beam.io.ReadFromText(f'{inputs}/*.jsonl.gz', coder=raw)
      | beam.FlatMap(parse_json)
    )
    hits = (
      p | 'Log' >> beam.io.ReadFromText(f'{inputs}/access.log', coder=raw) | beam.FlatMap(parse_log)
    )
    _ = (
      (events, hits)
      | beam.Flatten()
      | beam.WindowInto(Sessions(GAP_S))
      | beam.GroupByKey()
      | beam.Map(to_row)
      # Beam 2.62's WriteToParquet fails on session windows ("Cannot convert
      # GlobalWindow to _IntervalWindowBase", seen): rows go back to the global one.
      | 'Unwindow' >> beam.WindowInto(GlobalWindows())
      | beam.io.WriteToParquet(f'{output}/sessions', schema)
    )
  written = glob.glob(f'{output}/sessions*')
  import pyarrow.parquet as pq

  return {'sessions': sum(pq.read_metadata(f).num_rows for f in written)}


def run_duckdb(inputs: str, output: str) -> dict:
  import duckdb

  os.makedirs(output, exist_ok=True)
  con = duckdb.connect()
  con.execute(f"""
    create table hits as
    with json_events as (
      select coalesce(anonymous_id, user_id) k, try_cast(event_time as timestamptz) t
      from read_json('{inputs}/*.jsonl.gz', format = 'newline_delimited',
        columns = {{anonymous_id: 'varchar', user_id: 'varchar', event_time: 'varchar'}},
        ignore_errors = true)
    ), log_lines as (
      select regexp_extract(line, '{ACCESS_LOG_RE}', ['ip', 'time', 'status', 'ua']) m
      from read_csv('{inputs}/access.log', columns = {{line: 'varchar'}}, delim = '\\x01',
        quote = '', escape = '', header = false, ignore_errors = true)
    )
    select k, t from json_events where k is not null and t is not null
    union all
    select m.ip || '|' || m.ua, try_strptime(m.time, '%d/%b/%Y:%H:%M:%S %z')
    from log_lines where m.ip <> '' and try_strptime(m.time, '%d/%b/%Y:%H:%M:%S %z') is not null
  """)
  con.execute(f"""
    copy (
      with gaps as (
        select k, t, case when t - lag(t) over (partition by k order by t)
          < interval {GAP_S} second then 0 else 1 end starts
        from hits
      ), numbered as (
        select k, t, sum(starts) over (partition by k order by t rows unbounded preceding) n
        from gaps
      )
      select k session_key, min(t) session_start, max(t) session_end, count(*) event_count
      from numbered group by k, n
    ) to '{output}/sessions.parquet' (format parquet)
  """)
  sessions = con.execute(f"select count(*) from '{output}/sessions.parquet'").fetchone()[0]
  return {'sessions': sessions}


def run_plain(inputs: str, output: str) -> dict:
  import pyarrow.parquet as pq

  from beam_pipelines.io import tables
  from beam_pipelines.io.sources import (
    ACCESS_LOG,
    EVENTS_JSONL,
    SourceSpec,
    expand_inputs,
    parse_file,
  )
  from transforms.enrich.events import enrich_event
  from transforms.enrich.pseudonymize import Pseudonymizer, salt_from_environment
  from transforms.event_time import parse_event_time
  from transforms.parse.parse_access_log import AccessLogParser
  from transforms.parse.parse_events import EventLineParser
  from transforms.records import Event
  from transforms.sessions.deduplicate import deduplicate
  from transforms.sessions.sessionize import sessionize_key

  now_us = parse_event_time('2026-06-01T00:00:00Z')
  pseudonymizer = Pseudonymizer(salt_from_environment())
  parsers = {
    EVENTS_JSONL: EventLineParser('EUR', now_us),
    ACCESS_LOG: AccessLogParser(pseudonymizer, now_us),
  }
  files = expand_inputs(
    [
      SourceSpec(EVENTS_JSONL, f'{inputs}/*.jsonl.gz'),
      SourceSpec(ACCESS_LOG, f'{inputs}/access.log'),
    ]
  )
  events = [
    enrich_event(outcome, pseudonymizer, None)
    for file in files
    for _, outcome in parse_file(file, parsers[file.kind])
    if isinstance(outcome, Event)
  ]
  by_key: dict[str, list] = {}
  for event, _ in deduplicate(events):
    by_key.setdefault(event.session_key, []).append(event)
  del events
  rows, sessions = [], []
  for key in sorted(by_key):
    for session, members in sessionize_key(key, by_key[key], GAP_S * 1_000_000, 86400_000_000):
      sessions.append(session)
      rows.extend(members)
  os.makedirs(output, exist_ok=True)
  pq.write_table(tables.to_arrow(tables.EVENTS, rows), f'{output}/events.parquet')
  pq.write_table(tables.to_arrow(tables.SESSIONS, sessions), f'{output}/sessions.parquet')
  return {'sessions': len(sessions)}


RUNNERS = {'full': run_full, 'naive': run_naive, 'duckdb': run_duckdb, 'plain': run_plain}


def one(kind: str, inputs: str, output: str, full_flags: str, stage_times: bool) -> None:
  """Worker mode: one run in this process; prints its figures as JSON."""
  import shutil

  shutil.rmtree(output, ignore_errors=True)
  started = time.monotonic()  # before timing_stages, whose import of Beam counts
  if kind == 'full':
    stages = timing_stages() if stage_times else None
    result = run_full(inputs, output, tuple(full_flags.split()))
    if stages is not None:
      result['stages'] = [
        {'stage': label, 'seconds': round(wall, 2), 'cpu_seconds': round(cpu, 2)}
        for label, (wall, cpu) in stages.items()
      ]
  else:
    result = RUNNERS[kind](inputs, output)
  # CPU seconds of this process and of the workers it waited for (multi_processing):
  # steadier than wall time on a shared machine, and they show when two cores worked.
  cpu = sum(
    usage.ru_utime + usage.ru_stime
    for usage in (
      resource.getrusage(resource.RUSAGE_SELF),
      resource.getrusage(resource.RUSAGE_CHILDREN),
    )
  )
  result.update(
    kind=kind,
    seconds=round(time.monotonic() - started, 2),
    cpu_seconds=round(cpu, 1),
    peak_rss_mb=round(peak_rss_mb()),
  )
  print(json.dumps(result))


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--sizes', default='100000,1000000', help='Events per run, comma-separated.')
  parser.add_argument('--days', type=int, default=7)
  parser.add_argument('--kinds', default='full,naive,duckdb,plain')
  parser.add_argument('--workdir', default='/tmp/shopstream-bench')
  parser.add_argument(
    '--full-flags',
    default='',
    help='Beam flags for the full run, e.g. '
    '"--direct_num_workers=2 --direct_running_mode=multi_processing".',
  )
  parser.add_argument(
    '--stage-times',
    action='store_true',
    help='Also report wall and CPU seconds per fused stage of the full run (in-process '
    'runner only: with workers of their own the bundles run elsewhere).',
  )
  parser.add_argument(
    '--repeat',
    type=int,
    default=1,
    help='Rounds of every kind at each size, interleaved; the table gives medians '
    '(one run of each kind on this machine varied by 10-20%%).',
  )
  parser.add_argument('--one', choices=sorted(RUNNERS), help=argparse.SUPPRESS)
  parser.add_argument('--inputs', help=argparse.SUPPRESS)
  parser.add_argument('--output', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.repeat < 1:
    parser.error(f'--repeat must be at least 1, got {args.repeat}')
  # Synthetic input, perhaps cached from before generate() marked its folders.
  os.environ.setdefault('SHOPSTREAM_PII_SALT', 'bench')
  if args.one:
    one(args.one, args.inputs, args.output, args.full_flags, args.stage_times)
    return

  from beam_pipelines.dev.sample_data import GeneratorConfig, generate

  results = []
  for size in (int(s) for s in args.sizes.split(',')):
    inputs = os.path.join(args.workdir, f'input-{size}-{args.days}')
    if not os.path.exists(os.path.join(inputs, 'access.log')):
      started = time.monotonic()
      generate(GeneratorConfig(output_dir=inputs, events=size, days=args.days))
      print(f'generated {size:,} events in {time.monotonic() - started:.0f} s', file=sys.stderr)
    for round_number, kind in (
      (r, k) for r in range(1, args.repeat + 1) for k in args.kinds.split(',')
    ):
      command = [
        sys.executable,
        os.path.abspath(__file__),
        '--one',
        kind,
        '--inputs',
        inputs,
        '--output',
        os.path.join(args.workdir, f'out-{kind}'),
        # With '=': a value that starts with '--' would be read as an option.
        f'--full-flags={args.full_flags}',
        *(['--stage-times'] if args.stage_times else []),
      ]
      done = subprocess.run(command, capture_output=True, text=True, check=True)
      result = json.loads(done.stdout.strip().splitlines()[-1])
      result.update(events=size, round=round_number)
      print(json.dumps(result), flush=True)
      results.append(result)
  print_table(results)
  print_stages(results)


def _runs(results: list[dict]) -> dict[tuple[int, str], list[dict]]:
  """The runs of each (events, kind), in round order."""
  by: dict[tuple[int, str], list[dict]] = {}
  for r in results:
    by.setdefault((r['events'], r['kind']), []).append(r)
  return by


def _median_seconds(runs: list[dict]) -> float:
  return statistics.median(r['seconds'] for r in runs)


def _spread(values: list[float], unit: str) -> str:
  """'median' for one value, else 'median (least-most, N runs)'."""
  middle = statistics.median(values)
  if len(values) == 1:
    return f'{middle:.2f}{unit}'
  return f'{middle:.2f}{unit} ({min(values):.2f}-{max(values):.2f}, {len(values)} runs)'


def print_table(results: list[dict]) -> None:
  by = _runs(results)
  sizes = sorted({r['events'] for r in results})
  print('\n| events | run | seconds | events/s | peak RSS MB | sessions | vs full |')
  print('|---|---|---|---|---|---|---|')
  for size in sizes:
    full = {r['round']: r for r in by.get((size, 'full'), [])}
    for kind in ('full', 'naive', 'duckdb', 'plain'):
      runs = by.get((size, kind))
      if not runs:
        continue
      seconds = _median_seconds(runs)
      # Each round's own ratio, so that a slow hour weighs on both sides of it.
      ratios = [r['seconds'] / full[r['round']]['seconds'] for r in runs if r['round'] in full]
      ratio = _spread(ratios, 'x time') if ratios and kind != 'full' else ''
      print(
        f'| {size:,} | {kind} | {_spread([r["seconds"] for r in runs], "")} | '
        f'{size / seconds:,.0f} | {max(r["peak_rss_mb"] for r in runs):,} | '
        f'{runs[0]["sessions"]:,} | {ratio} |'
      )
  if len(sizes) > 1 and all((s, 'full') in by for s in sizes):
    small, large = by[(sizes[0], 'full')], by[(sizes[-1], 'full')]
    memory = max(r['peak_rss_mb'] for r in large) / max(r['peak_rss_mb'] for r in small)
    print(
      f'\nfull, {sizes[0]:,} -> {sizes[-1]:,} events ({sizes[-1] / sizes[0]:.0f}x): time '
      f'{_median_seconds(large) / _median_seconds(small):.1f}x (medians), peak RSS '
      f'{memory:.1f}x'
    )


def print_stages(results: list[dict]) -> None:
  """Where the full runs' time went, stage by stage (runs made with --stage-times): the
  run of median seconds at each size."""
  for (size, kind), runs in _runs(results).items():
    runs = [r for r in runs if r.get('stages')]
    if kind != 'full' or not runs:
      continue
    r = sorted(runs, key=lambda run: run['seconds'])[(len(runs) - 1) // 2]
    print(f"\nfull, {size:,} events, {r['seconds']} s (round {r['round']}): the runner's stages")
    print('| stage | seconds | CPU seconds |')
    print('|---|---|---|')
    for stage in r['stages']:
      print(f'| {stage["stage"]} | {stage["seconds"]} | {stage["cpu_seconds"]} |')
    in_stages = sum(stage['seconds'] for stage in r['stages'])
    print(
      f'| (before and after the stages: imports, graph, publishing) | '
      f'{r["seconds"] - in_stages:.2f} | |'
    )


if __name__ == '__main__':
  main()
