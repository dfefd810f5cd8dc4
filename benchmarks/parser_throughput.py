"""Each input kind's parser a record at a time against a chunk at a time (a command, not a test).

    python benchmarks/parser_throughput.py --events 500000

Generates N events with `shopstream generate` (cached in --workdir), reads each
file of the kinds that have a chunk parser into the chunks the batch pipeline
reads (CSV records joined, fixed-width records cut), and times, in one thread:

- record: the record parser over every record, as RawRecords;
- chunk:  parse_chunk over each chunk, then the record parser over what it
          leaves (parse_line_chunks.parse_chunk, the batch pipeline's step).

It prints records/s of each and their ratio; each figure is the best of --repeat.
"line breaks" is the order export with a line break in every description.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_pipelines.dev.sample_data import GeneratorConfig, generate  # noqa: E402
from beam_pipelines.io.sources import (  # noqa: E402
  ACCESS_LOG,
  CHUNK_BYTES,
  EVENTS_JSONL,
  ORDERS_CSV,
  ORDERS_FIXED,
  expand_inputs,
  open_input,
  parse_source_spec,
  record_arrays,
)
from transforms.accounting import Counts  # noqa: E402
from transforms.dead_letters import record_outcome  # noqa: E402
from transforms.enrich.pseudonymize import DEFAULT_SALT, Pseudonymizer  # noqa: E402
from transforms.event_time import parse_event_time  # noqa: E402
from transforms.parse.access_log_chunks import AccessLogChunkParser  # noqa: E402
from transforms.parse.event_chunks import EventChunkParser  # noqa: E402
from transforms.parse.fixed_width import load_layout  # noqa: E402
from transforms.parse.order_chunks import (  # noqa: E402
  FixedWidthOrdersChunkParser,
  OrdersCsvChunkParser,
)
from transforms.parse.parse_fixed_orders import REQUIRED_COLUMNS  # noqa: E402
from transforms.parse.parse_line_chunks import parse_chunk  # noqa: E402
from transforms.records import Event, LineChunk, OrderLine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE_BREAKS = 'orders-line-breaks.csv'
LAYOUT = os.path.join(ROOT, 'samples', 'orders-fixed', 'layout.yaml')


def chunks_of(kind: str, pattern: str) -> list[LineChunk]:
  chunks = []
  for file in expand_inputs([parse_source_spec(f'{kind}={pattern}')]):
    raw, stream = open_input(file.path)
    position = 1
    try:
      for records, spanned, line_offsets in record_arrays(stream, kind, None, CHUNK_BYTES):
        chunks.append(LineChunk(file.source, position, file.mtime_us, records, line_offsets))
        position += spanned
    finally:
      stream.close()
      raw.close()
  return chunks


def with_line_breaks(path: str, variant: str) -> None:
  """The order export again with a line break in every description (quoted, so each
  record spans two lines), as legacy exports have some; written once."""
  if os.path.exists(variant):
    return
  with open(path, newline='', encoding='utf-8') as source:
    rows = list(csv.reader(source))
  for row in rows[1:]:
    if len(row) > 2:
      row[2] += '\nsecond line'
  with open(variant, 'w', newline='', encoding='utf-8') as out:
    csv.writer(out, lineterminator='\n').writerows(rows)


def best_of(repeat: int, run, *args) -> float:
  times = []
  for _ in range(repeat):
    started = time.perf_counter()
    run(*args)
    times.append(time.perf_counter() - started)
  return min(times)


def by_record(records: list, parser, kind: str) -> None:
  counts = Counts()
  for record in records:
    record_outcome(counts, record, parser, kind)


def by_chunk(chunks: list[LineChunk], parser, kind: str, record_type: type) -> None:
  for chunk in chunks:
    parse_chunk(chunk, {kind: (parser, kind)}, record_type)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--events', type=int, default=500_000, help='generated events')
  parser.add_argument('--workdir', default='/tmp/shopstream-bench', help='cache of inputs')
  parser.add_argument('--repeat', type=int, default=3, help='runs of each; the best counts')
  args = parser.parse_args()

  folder = os.path.join(args.workdir, f'parsers-{args.events}')
  if not os.path.exists(os.path.join(folder, 'orders.csv')):
    generate(GeneratorConfig(output_dir=folder, events=args.events))
  now_us = parse_event_time('2027-01-01T00:00:00Z')
  pseudonymizer = Pseudonymizer(DEFAULT_SALT.encode())
  layout = load_layout(LAYOUT, REQUIRED_COLUMNS)
  with_line_breaks(os.path.join(folder, 'orders.csv'), os.path.join(folder, LINE_BREAKS))
  orders_csv = OrdersCsvChunkParser(pseudonymizer, 'Europe/London', 'GBP', now_us)
  runs = [  # label, kind, file pattern, chunk parser, record type
    (EVENTS_JSONL, EVENTS_JSONL, 'events-*.jsonl.gz', EventChunkParser('EUR', now_us), Event),
    (ACCESS_LOG, ACCESS_LOG, 'access.log', AccessLogChunkParser(pseudonymizer, now_us), Event),
    (ORDERS_CSV, ORDERS_CSV, 'orders.csv', orders_csv, OrderLine),
    ('  line breaks', ORDERS_CSV, LINE_BREAKS, orders_csv, OrderLine),
    (
      ORDERS_FIXED,
      ORDERS_FIXED,
      'orders-fixed.txt',
      FixedWidthOrdersChunkParser(
        layout, layout.encoding, pseudonymizer, 'Europe/London', 'GBP', now_us
      ),
      OrderLine,
    ),
  ]
  print(f'{"kind":<14}{"records":>10}{"record/s":>12}{"chunk/s":>12}{"ratio":>8}')
  for label, kind, pattern, chunk_parser, record_type in runs:
    chunks = chunks_of(kind, os.path.join(folder, pattern))
    records = [record for chunk in chunks for record in chunk.records()]

    record_s = best_of(args.repeat, by_record, records, chunk_parser, kind)
    chunk_s = best_of(args.repeat, by_chunk, chunks, chunk_parser, kind, record_type)
    n = len(records)
    print(
      f'{label:<14}{n:>10,}{n / record_s:>12,.0f}{n / chunk_s:>12,.0f}{record_s / chunk_s:>7.1f}x'
    )


if __name__ == '__main__':
  main()
