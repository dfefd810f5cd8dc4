"""Throughput of the full batch pipeline on generated data (a command, not a test).

    python benchmarks/batch_throughput.py --events 200000
    python benchmarks/batch_throughput.py --events 200000 -- --direct_num_workers=2

Generates N events with `shopstream generate` (cached in --workdir), runs the
batch pipeline over them with the direct.yaml config plus any Beam flags given
after ``--``, and prints wall time, events/s (generated events), input lines/s
and peak RSS. Each figure is the best of --repeat runs; the machine's noise is
in the spread, which is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_pipelines.dev.sample_data import GeneratorConfig, generate  # noqa: E402
from beam_pipelines.pipelines import batch_pipeline, runner_config  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--events', type=int, default=200_000)
  parser.add_argument('--days', type=int, default=7)
  parser.add_argument('--repeat', type=int, default=1)
  parser.add_argument('--workdir', default='/tmp/shopstream-bench')
  parser.add_argument('--runner-config', default='runner_configs/direct.yaml')
  args, beam_flags = parser.parse_known_args()
  # Synthetic input, perhaps cached from before generate() marked its folders.
  os.environ.setdefault('SHOPSTREAM_PII_SALT', 'bench')
  beam_flags = [f for f in beam_flags if f != '--']

  inputs = os.path.join(args.workdir, f'input-{args.events}-{args.days}')
  if not os.path.exists(os.path.join(inputs, 'access.log')):
    started = time.monotonic()
    generate(GeneratorConfig(output_dir=inputs, events=args.events, days=args.days))
    print(f'generated {args.events:,} events in {time.monotonic() - started:.1f} s: {inputs}')
  output = os.path.join(args.workdir, 'output')
  flags = (
    runner_config.load_runner_config(args.runner_config)
    + [
      f'--source=events-jsonl={inputs}/*.jsonl.gz',
      f'--source=access-log={inputs}/access.log',
      f'--output={output}',
      '--progress=never',
      '--reference-time=2026-06-01T00:00:00Z',
    ]
    + beam_flags
  )

  times = []
  for _ in range(args.repeat):
    shutil.rmtree(output, ignore_errors=True)
    started = time.monotonic()
    summary = batch_pipeline.run(flags)
    times.append(time.monotonic() - started)
  best = min(times)
  peak_mb = (
    max(
      resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    / 1024
  )
  totals = summary['totals']
  print(
    json.dumps(
      {
        'events_generated': args.events,
        'input_lines': totals['read'],
        'clean_events': totals['clean'],
        'sessions': summary['tables']['sessions'],
        'beam_flags': beam_flags,
        'seconds_best': round(best, 2),
        'seconds_all': [round(t, 2) for t in times],
        'events_per_s': round(args.events / best),
        'input_lines_per_s': round(totals['read'] / best),
        'peak_rss_mb': round(peak_mb),
      },
      indent=2,
    )
  )


if __name__ == '__main__':
  main()
