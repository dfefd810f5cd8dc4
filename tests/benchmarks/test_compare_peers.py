"""compare_peers --stage-times: the stage table a README figure comes from."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_stage_times_name_the_steps_and_fit_in_the_run(tmp_path):
  done = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, 'benchmarks', 'compare_peers.py'),
      '--sizes=2000',
      '--kinds=full',
      '--stage-times',
      f'--workdir={tmp_path}',
    ],
    capture_output=True,
    text=True,
    check=True,
    timeout=300,
  )
  run = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{')))
  stages = run['stages']
  names = ' + '.join(stage['stage'] for stage in stages)
  for step in ('Parse events', 'Enrich', 'Deduplicate', 'Sessionize', 'Write events'):
    assert step in names
  assert all(stage['seconds'] >= 0 and stage['cpu_seconds'] >= 0 for stage in stages)
  assert 0 < sum(stage['seconds'] for stage in stages) < run['seconds']
  assert '(before and after the stages' in done.stdout


def _compare_peers():
  import importlib.util

  spec = importlib.util.spec_from_file_location(
    'compare_peers', os.path.join(ROOT, 'benchmarks', 'compare_peers.py')
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_repeated_rounds_give_medians_and_each_rounds_own_ratio(capsys):
  def run(kind, round_number, seconds, rss=100):
    return dict(
      kind=kind, events=1000, round=round_number, seconds=seconds, peak_rss_mb=rss, sessions=7
    )

  # The second round ran on a machine twice as slow: its ratio is still its own.
  _compare_peers().print_table(
    [
      run('full', 1, 10.0),
      run('naive', 1, 100.0, rss=300),
      run('full', 2, 20.0),
      run('naive', 2, 150.0),
      run('full', 3, 12.0),
      run('naive', 3, 130.0),
    ]
  )
  lines = capsys.readouterr().out.splitlines()
  rows = {line.split(' | ')[1]: line for line in lines if line.startswith('| 1,000 |')}
  assert '12.00 (10.00-20.00, 3 runs)' in rows['full']
  # Per round 10x, 7.5x and 10.83x: the median is 10x, where the medians' ratio is 130 / 12.
  assert '10.00x time (7.50-10.83, 3 runs)' in rows['naive']
  assert '| 300 |' in rows['naive']  # the highest peak of the runs
