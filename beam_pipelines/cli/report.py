"""``shopstream report``: one self-contained HTML page about an output folder.

Sessions per day, session length and duration, the funnel, channels and
devices, top item pairs, retention (the cohort heatmap, the repeat-purchase
rate by month, RFM segment sizes), dead letters by reason and the last run's
accounting. Plots are inline SVG (matplotlib), tables are HTML: the file
needs no network and no other file to be viewed or mailed.

    shopstream report --output tables/   ->  tables/report.html
"""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Sequence
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.io import table_store

REPORT_FILE = 'report.html'
SECTIONS = (
  'sessions-per-day',
  'session-length',
  'session-duration',
  'funnel',
  'channels',
  'devices',
  'item-pairs',
  'retention-cohorts',
  'repeat-purchases',
  'segments',
  'dead-letters',
  'accounting',
)


def read_table(output: str, name: str, columns: Sequence[str]) -> Optional[pa.Table]:
  """The columns of a table that has them, in whichever format the output holds it;
  None for a table the output lacks."""
  return table_store.for_output(output).read(name, columns)


def _svg(figure) -> str:
  import matplotlib

  buffer = io.StringIO()
  # No creation date and fixed element ids: the same tables give the same page.
  with matplotlib.rc_context({'svg.hashsalt': 'shopstream'}):
    figure.savefig(buffer, format='svg', bbox_inches='tight', metadata={'Date': None})
  text = buffer.getvalue()
  return text[text.index('<svg') :]  # drop the XML prolog and DOCTYPE


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> str:
  from matplotlib.figure import Figure

  figure = Figure(figsize=(7, 3.2))
  axes = figure.subplots()
  axes.bar([str(label) for label in labels], values, color='#3a6ea5')
  axes.set_title(title)
  axes.set_xlabel(xlabel)
  axes.tick_params(axis='x', labelrotation=45 if len(labels) > 6 else 0)
  return _svg(figure)


def histogram(values: Sequence[float], bins, title: str, xlabel: str, log_x: bool = False) -> str:
  from matplotlib.figure import Figure

  figure = Figure(figsize=(7, 3.2))
  axes = figure.subplots()
  axes.hist(values, bins=bins, color='#5a9e6f')
  if log_x:
    axes.set_xscale('log')
  axes.set_title(title)
  axes.set_xlabel(xlabel)
  axes.set_ylabel('sessions')
  return _svg(figure)


def heatmap(rows: list[str], columns: list[int], values: dict, title: str) -> str:
  """Cells of values in [0, 1] (missing ones blank), each labelled with its percentage."""
  import numpy as np
  from matplotlib.figure import Figure

  grid = np.full((len(rows), len(columns)), np.nan)
  for (row, column), value in values.items():
    grid[rows.index(row), columns.index(column)] = value
  figure = Figure(figsize=(7, 0.6 + 0.35 * len(rows)))
  axes = figure.subplots()
  axes.imshow(grid, cmap='Blues', vmin=0, vmax=1, aspect='auto')
  axes.set_xticks(range(len(columns)), [str(c) for c in columns])
  axes.set_yticks(range(len(rows)), rows)
  axes.set_xlabel('months since the first order')
  axes.set_title(title)
  for (row, column), value in values.items():
    axes.text(
      columns.index(column),
      rows.index(row),
      f'{100 * value:.0f}%',
      ha='center',
      va='center',
      fontsize=7,
      color='white' if value > 0.6 else '#222',
    )
  return _svg(figure)


def html_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  head = ''.join(f'<th>{html.escape(str(h))}</th>' for h in header)
  body = ''.join(
    '<tr>' + ''.join(f'<td>{html.escape(_cell(v))}</td>' for v in row) + '</tr>' for row in rows
  )
  return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:,.2f}'
  if isinstance(value, int):
    return f'{value:,}'
  return '' if value is None else str(value)


def counts(table: pa.Table, column: str, limit: int = 12) -> list[tuple[str, int]]:
  """(value, count) pairs, most frequent first; missing values as '(none)'."""
  values = pc.value_counts(pc.fill_null(table.column(column), '(none)'))
  pairs = [(v['values'].as_py(), v['counts'].as_py()) for v in values]
  return sorted(pairs, key=lambda p: (-p[1], str(p[0])))[:limit]


def _section(anchor: str, title: str, body: str) -> str:
  return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _empty(what: str) -> str:
  return f'<p class="empty">No {html.escape(what)} in this output.</p>'


def build_report(output: str) -> str:
  """The report's HTML for the tables in ``output``."""
  sessions = read_table(
    output,
    'sessions',
    ['dt', 'event_count', 'duration_s', 'product_views', 'add_to_carts', 'purchases', 'channel',
     'device_class', 'is_bot'],
  )  # fmt: skip
  pairs = read_table(
    output,
    'item_pairs',
    ['item_a', 'item_b', 'co_views', 'co_purchases', 'top_category_a', 'top_category_b'],
  )
  dead = read_table(output, 'dead_letter', ['reason'])
  parts = []

  if sessions is not None and sessions.num_rows:
    days = sorted(counts(sessions, 'dt', limit=10_000))
    parts.append(
      _section(
        'sessions-per-day',
        'Sessions per day',
        bar_chart([str(d) for d, _ in days], [n for _, n in days], 'Sessions per day', 'day'),
      )
    )
    lengths = sessions.column('event_count').to_pylist()
    parts.append(
      _section(
        'session-length',
        'Session length',
        histogram(lengths, range(1, max(lengths) + 2), 'Events per session', 'events'),
      )
    )
    minutes = [max(d / 60, 0.01) for d in sessions.column('duration_s').to_pylist()]
    bins = [0.01 * (1.6**n) for n in range(30) if 0.01 * (1.6**n) <= max(minutes) * 1.6]
    parts.append(
      _section(
        'session-duration',
        'Session duration',
        histogram(minutes, bins or [0.01, 1], 'Duration (bounces at 0.01)', 'minutes', log_x=True),
      )
    )
    total = sessions.num_rows
    funnel = [
      ('sessions', total),
      ('viewed a product', pc.sum(pc.greater(sessions['product_views'], 0)).as_py()),
      ('added to cart', pc.sum(pc.greater(sessions['add_to_carts'], 0)).as_py()),
      ('purchased', pc.sum(pc.greater(sessions['purchases'], 0)).as_py()),
    ]
    rates = [(step, n, f'{100 * n / total:.1f}%') for step, n in funnel]
    parts.append(
      _section(
        'funnel',
        'Funnel: view -> cart -> purchase',
        bar_chart([s for s, _ in funnel], [n for _, n in funnel], 'Sessions reaching', 'step')
        + html_table(['step', 'sessions', 'of all sessions'], rates),
      )
    )
    for anchor, column, title in (
      ('channels', 'channel', 'Sessions by channel'),
      ('devices', 'device_class', 'Sessions by device class'),
    ):
      top = counts(sessions, column)
      parts.append(
        _section(anchor, title, bar_chart([c for c, _ in top], [n for _, n in top], title, column))
      )
  else:
    for anchor in SECTIONS[:6]:
      parts.append(_section(anchor, anchor.replace('-', ' ').capitalize(), _empty('sessions')))

  if pairs is not None and pairs.num_rows:
    ranked = sorted(
      pairs.to_pylist(),
      key=lambda r: (-(r['co_views'] + r['co_purchases']), r['item_a'], r['item_b']),
    )[:20]
    parts.append(
      _section(
        'item-pairs',
        'Top item pairs',
        bar_chart(
          [f'{r["item_a"]}+{r["item_b"]}' for r in ranked[:10]],
          [r['co_views'] + r['co_purchases'] for r in ranked[:10]],
          'Co-views + co-purchases (top 10)',
          'pair',
        )
        + html_table(
          ['item a', 'item b', 'co-views', 'co-purchases', 'category a', 'category b'],
          [
            [
              r['item_a'],
              r['item_b'],
              r['co_views'],
              r['co_purchases'],
              r['top_category_a'],
              r['top_category_b'],
            ]
            for r in ranked
          ],  # fmt: skip
        ),
      )
    )
  else:
    parts.append(_section('item-pairs', 'Top item pairs', _empty('item pairs')))

  parts.extend(_retention(output))

  if dead is not None and dead.num_rows:
    reasons: dict[str, int] = {}
    for text in dead.column('reason').to_pylist():
      for reason in text.split(','):
        reasons[reason] = reasons.get(reason, 0) + 1
    ranked_reasons = sorted(reasons.items(), key=lambda p: (-p[1], p[0]))
    parts.append(
      _section(
        'dead-letters',
        'Dead letters by reason',
        bar_chart(
          [r for r, _ in ranked_reasons[:12]],
          [n for _, n in ranked_reasons[:12]],
          'Dead letters by reason',
          'reason',
        )
        + html_table(['reason', 'records'], ranked_reasons),
      )
    )
  else:
    parts.append(_section('dead-letters', 'Dead letters by reason', _empty('dead letters')))

  parts.append(_section('accounting', "The last run's accounting", _accounting(output)))
  return _page(output, parts)


def repeat_purchase_rates(orders: pa.Table) -> list[tuple[str, int, int]]:
  """Per month: (month, customers who ordered, of them customers who had ordered before)."""
  kept = [
    (row['customer_id'], row['order_time'])
    for row in orders.to_pylist()
    if row['customer_id'] is not None and not row['is_cancellation']
  ]
  first: dict[str, object] = {}
  for customer, time in kept:
    first[customer] = min(first.get(customer, time), time)
  months: dict[str, tuple[set, set]] = {}
  for customer, time in kept:
    buyers, repeat = months.setdefault(f'{time:%Y-%m}', (set(), set()))
    buyers.add(customer)
    if time > first[customer]:
      repeat.add(customer)
  return [(month, len(b), len(r)) for month, (b, r) in sorted(months.items())]


def _retention(output: str) -> list[str]:
  cohorts = read_table(
    output, 'retention_cohorts', ['cohort_month', 'months_since', 'cohort_size', 'retention_rate']
  )
  if cohorts is not None and cohorts.num_rows:
    cells = cohorts.to_pylist()
    rows = sorted({c['cohort_month'] for c in cells})
    columns = sorted({c['months_since'] for c in cells})
    sizes = {c['cohort_month']: c['cohort_size'] for c in cells}
    labels = [f'{month} ({sizes[month]})' for month in rows]
    values = {
      (f'{c["cohort_month"]} ({sizes[c["cohort_month"]]})', c['months_since']): c['retention_rate']
      for c in cells
    }
    body = heatmap(labels, columns, values, 'Customers active, by first-order month (size)')
  else:
    body = _empty('retention cohorts')
  parts = [_section('retention-cohorts', 'Cohort retention', body)]

  orders = read_table(output, 'orders', ['customer_id', 'order_time', 'is_cancellation'])
  if orders is not None and orders.num_rows:
    rates = repeat_purchase_rates(orders)
    body = bar_chart(
      [m for m, _, _ in rates],
      [100 * r / b if b else 0 for _, b, r in rates],
      'Buyers who had bought before (%)',
      'month',
    ) + html_table(
      ['month', 'buyers', 'repeat buyers', 'repeat rate'],
      [[m, b, r, f'{100 * r / b:.1f}%'] for m, b, r in rates],
    )
  else:
    body = _empty('orders')
  parts.append(_section('repeat-purchases', 'Repeat-purchase rate', body))

  customers = read_table(output, 'customers', ['rfm_segment'])
  segments = (
    [(s, n) for s, n in counts(customers, 'rfm_segment', limit=20) if s != '(none)']
    if customers is not None and customers.num_rows
    else []
  )
  if segments:
    body = bar_chart(
      [s for s, _ in segments], [n for _, n in segments], 'Customers per RFM segment', 'segment'
    ) + html_table(['segment', 'customers'], segments)
  else:
    body = _empty('RFM segments')
  parts.append(_section('segments', 'RFM segments', body))
  return parts


def _accounting(output: str) -> str:
  path = os.path.join(output, '_summary.json')
  if not os.path.exists(path):
    return _empty('run summary (_summary.json)')
  with open(path, encoding='utf-8') as f:
    summary = json.load(f)
  columns = list(summary['totals'])
  rows = [[source, *(row.get(c, 0) for c in columns)] for source, row in summary['sources'].items()]
  rows.append(['total', *(summary['totals'][c] for c in columns)])
  from matplotlib.figure import Figure

  figure = Figure(figsize=(7, 2.6))
  axes = figure.subplots()
  outcomes = [c for c in columns if c != 'read']
  axes.barh(outcomes, [summary['totals'][c] for c in outcomes], color='#a55a3a')
  axes.set_title(f'{summary["totals"]["read"]:,} records read')
  return (
    _svg(figure)
    + html_table(['source', *columns], rows)
    + html_table(['table', 'rows'], sorted(summary['tables'].items()))
  )


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
section { margin-bottom: 2.5rem; } svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin-top: .8rem; font-size: .9rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
td:not(:first-child) { font-variant-numeric: tabular-nums; } .empty { color: #777; }
"""


def _page(output: str, sections: list[str]) -> str:
  nav = ' · '.join(f'<a href="#{a}">{a.replace("-", " ")}</a>' for a in SECTIONS)
  return (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    f'<title>shopstream report: {html.escape(output)}</title><style>{STYLE}</style></head>'
    f'<body><h1>shopstream report</h1><p>{html.escape(os.path.abspath(output))}</p>'
    f'<nav>{nav}</nav>{"".join(sections)}</body></html>'
  )


def write_report(output: str) -> str:
  """Writes ``<output>/report.html``; returns its path."""
  if not os.path.isdir(output):
    raise ValueError(f'--output {output} is not a folder of shopstream tables')
  path = os.path.join(output, REPORT_FILE)
  content = build_report(output)
  temporary = f'{path}.tmp'
  with open(temporary, 'w', encoding='utf-8') as f:
    f.write(content)
  os.replace(temporary, path)
  return path
