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
