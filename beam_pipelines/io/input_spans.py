"""When each input file's records happen, so that a backfill day reads only what it needs.

A backfill day needs the records whose time falls in its context (see
transforms/day_window.py) and the dead letters dated on it. Daily exports
cover a day or two each, so a day of a year-long backfill needs a handful of
files, not all of them. Before it starts, a backfill scans each event and
order file once with the batch parse functions and keeps its span:

- the UTC days its records fall on (events' event_time, order lines'
  order_time, and the time of records that fail but have one): days, not a
  first-last range, so that one stray far-future line does not make a file
  reach every day;
- whether it has undated records (unreadable lines, a corrupt end): their
  dead letters are dated by the file's modification day, so that day's run
  must read the file too.

Catalog and taxonomy files have no time: every day reads them. Spans are kept
in the backfill manifest per (path, size, mtime), so a resume does not scan
again; a changed file is scanned anew.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple, Optional

from beam_pipelines.io.sources import (
  DIMENSION_KINDS,
  InputFile,
  parse_file,
)
from transforms.day_window import DayWindow
from transforms.dead_letters import RecordError, RecordFiltered
from transforms.event_time import utc_day


class FileSpan(NamedTuple):
  days: tuple  # the UTC days of its dated records, sorted
  undated_day: Optional[str]  # the day its undated dead letters go to, if it has any


def file_key(file: InputFile) -> str:
  return f'{file.kind}|{file.path}|{file.size}|{file.mtime_us}'


def scan_span(file: InputFile, parse, record_length: Optional[int]) -> FileSpan:
  """The span of one file's records (see the module doc)."""
  days: set[str] = set()
  undated = False
  try:
    for _, outcome in parse_file(file, parse, record_length):
      if isinstance(outcome, RecordFiltered):
        continue
      if isinstance(outcome, RecordError):
        when = outcome.event_time
      else:
        when = getattr(outcome, 'event_time', None) or getattr(outcome, 'order_time', None)
      if when is None:
        undated = True
      else:
        days.add(utc_day(when))
  except (EOFError, OSError, zlib.error):
    undated = True  # the unreadable rest becomes a dead letter dated by the file
  return FileSpan(tuple(sorted(days)), utc_day(file.mtime_us) if undated else None)


def scan_spans(files: list[InputFile], parsers: dict, known: dict) -> dict[str, FileSpan]:
  """Spans of the dated inputs by file_key; ``known`` (from a manifest) is reused."""
  spans = {}
  for file in files:
    if file.kind in DIMENSION_KINDS:
      continue
    key = file_key(file)
    if key in known:
      days, undated_day = known[key]
      spans[key] = FileSpan(tuple(days), undated_day)
    else:
      parse, record_length = parsers[file.kind]
      spans[key] = scan_span(file, parse, record_length)
  return spans


def files_for_day(window: DayWindow, files: list[InputFile], spans: dict) -> list[InputFile]:
  """The inputs a day's run must read: dimension files, and files that reach its context."""
  first, last = utc_day(window.context_start_us), utc_day(window.context_end_us - 1)
  chosen = []
  for file in files:
    span = spans.get(file_key(file))
    if span is None:  # a dimension file
      chosen.append(file)
    elif span.undated_day == window.day or any(first <= day <= last for day in span.days):
      chosen.append(file)
  return chosen
