"""The derived tables against DuckDB SQL over the tables they come from.

One generated sample (clickstream, order history with cancellations, the
product dimension) goes through `shopstream run`, which derives the tables at
its end; each derived table must equal an independent SQL computation over
the events, sessions, orders and order_lines Parquet.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from beam_pipelines import cli
from beam_pipelines.cli import report
from beam_pipelines.dev.sample_data import GeneratorConfig, generate


@pytest.fixture(scope='module', autouse=True)
def _salt(module_salt):
  pass


@pytest.fixture(scope='module')
def output(tmp_path_factory) -> str:
  inputs = tmp_path_factory.mktemp('inputs')
  generate(GeneratorConfig(output_dir=str(inputs), events=4000, days=3, seed=3))
  out = str(tmp_path_factory.mktemp('tables'))
  argv = [
    'run',
    '--source',
    f'events-jsonl={inputs}/events-*.jsonl.gz',
    '--source',
    f'access-log={inputs}/access.log',
    '--source',
    f'orders-csv={inputs}/orders.csv',
    '--source',
    f'catalog-csv={inputs}/catalog.csv',
    '--source',
    f'taxonomy={inputs}/taxonomy.txt',
    '--reference-time',
    '2026-06-01T00:00:00Z',
    '--progress',
    'never',
    '--output',
    out,
  ]
  assert cli.main(argv) == 0
  return out


def sql(output: str):
  con = duckdb.connect()
  for table in ('events', 'sessions', 'orders', 'order_lines'):
    con.execute(
      f"create view {table} as select * from read_parquet('{output}/{table}/*/*.parquet', "
      'hive_partitioning = true)'
    )
  for table in ('interactions', 'item_pairs', 'customers', 'retention_cohorts'):
    con.execute(f"create view {table} as select * from read_parquet('{output}/{table}/*.parquet')")
  con.execute(
    f'create view session_sequences as select * exclude (dt) from read_parquet('
    f"'{output}/session_sequences/*/*.parquet', hive_partitioning = true)"
  )
  return con


def same(con, derived: str, expected: str) -> int:
  """Rows in both directions of the difference; asserts none; returns the row count."""
  extra = con.execute(f'select count(*) from (({derived}) except all ({expected}))').fetchone()[0]
  missing = con.execute(f'select count(*) from (({expected}) except all ({derived}))').fetchone()[0]
  assert (extra, missing) == (0, 0), (derived, expected)
  return con.execute(f'select count(*) from ({expected})').fetchone()[0]


HUMAN_PRODUCT_EVENTS = """
  select * from events
  where not coalesce(is_bot, false) and product_id is not null
    and event_type in ('product_view', 'add_to_cart', 'purchase')
"""


def test_interactions_equal_sql(output):
  con = sql(output)
  expected = f"""
    select coalesce(user_id, anonymous_id) interaction_key, product_id,
      count(*) filter (event_type = 'product_view') as views,
      count(*) filter (event_type = 'add_to_cart') add_to_carts,
      count(*) filter (event_type = 'purchase') purchases,
      1.0 * views + 4.0 * add_to_carts + 10.0 * purchases weight,
      min(event_time) first_time, max(event_time) last_time,
      max(event_time) filter (event_type = 'product_view') last_view_time,
      max(event_time) filter (event_type = 'add_to_cart') last_cart_time,
      max(event_time) filter (event_type = 'purchase') last_purchase_time,
      max(category_path) category_path,
      split_part(max(category_path), ' > ', 1) top_category
    from ({HUMAN_PRODUCT_EVENTS}) group by all
  """
  derived = "select * replace (nullif(top_category, '') as top_category) from interactions"
  expected = f"select * replace (nullif(top_category, '') as top_category) from ({expected})"
  assert same(con, derived, expected) > 500
  repeated = con.execute('select count(*) from interactions where views > 1').fetchone()[0]
  assert repeated > 0  # the data has repeated views


def test_session_sequences_equal_sql(output):
  con = sql(output)
  expected = f"""
    select session_id, any_value(coalesce(anonymous_id, user_id)) session_key,
      (select first(user_id order by event_time, event_id) from events x
       where x.session_id = e.session_id and x.user_id is not null) user_id,
      (select min(event_time) from events x where x.session_id = e.session_id) session_start,
      list(product_id order by event_time, event_id) items,
      list(event_type order by event_time, event_id) item_events,
      count(*) length
    from ({HUMAN_PRODUCT_EVENTS}) e
    where session_id not in (select session_id from events where is_bot)
    group by session_id
  """
  assert same(con, 'select * from session_sequences', expected) > 300
  single = con.execute(
    'select count(*) from session_sequences where list_unique(items) = 1'
  ).fetchone()[0]
  assert single > 0  # sessions with a single product


def test_item_pairs_equal_sql(output):
  con = sql(output)
  expected = """
    with viewed as (
      select session_id, product_id, min((event_time, event_id)) first_seen
      from events where event_type = 'product_view' and product_id is not null
        and session_id not in (select session_id from events where is_bot)
      group by all
    ), capped_views as (
      select * from viewed qualify row_number() over (partition by session_id order by first_seen) <= 50
    ), co_views as (
      select a.product_id item_a, b.product_id item_b, count(*) co_views
      from capped_views a join capped_views b using (session_id)
      where a.product_id < b.product_id group by all
    ), bought as (
      select distinct order_id, product_id from events
      where event_type = 'purchase' and not coalesce(is_bot, false) and order_id is not null and product_id is not null
      union
      select distinct order_id, product_id from order_lines
      where line_type = 'product' and not is_cancellation and quantity > 0 and product_id is not null
    ), capped_bought as (
      select * from bought qualify row_number() over (partition by order_id order by product_id) <= 50
    ), co_purchases as (
      select a.product_id item_a, b.product_id item_b, count(*) co_purchases
      from capped_bought a join capped_bought b using (order_id)
      where a.product_id < b.product_id group by all
    )
    select item_a, item_b, coalesce(co_views, 0) co_views, coalesce(co_purchases, 0) co_purchases
    from co_views full outer join co_purchases using (item_a, item_b)
  """
  derived = 'select item_a, item_b, co_views, co_purchases from item_pairs'
  assert same(con, derived, expected) > 50
  both = con.execute('select count(*) from item_pairs where co_purchases > 0').fetchone()[0]
  assert both > 0
  # Category roll-ups agree with the products' paths in the events.
  wrong = con.execute("""
    select count(*) from item_pairs p
    where category_path_a is not null and top_category_a <> split_part(category_path_a, ' > ', 1)
  """).fetchone()[0]
  assert wrong == 0


def test_customers_equal_sql(output):
  con = sql(output)
  expected = """
    with as_of as (
      select greatest((select max(order_time) from orders), (select max(session_end) from sessions)) t
    ), ids as (
      select customer_id from orders where customer_id is not null
      union select user_id from sessions where user_id is not null
    ), o as (
      select customer_id, min(order_time) first_order_time, max(order_time) last_order_time,
        count(*) filter (not is_cancellation) orders, count(*) filter (is_cancellation) cancellations,
        case when count(distinct currency) = 1 then sum(total_amount) end monetary,
        case when count(distinct currency) = 1 then any_value(currency) end currency
      from orders group by all
    ), s as (
      select user_id customer_id, count(*) sessions_total,
        count(*) filter (session_start > (select t from as_of) - interval 7 day) sessions_7d,
        count(*) filter (session_start > (select t from as_of) - interval 30 day) sessions_30d,
        count(*) filter (session_start > (select t from as_of) - interval 90 day) sessions_90d,
        max(session_start) last_session_time, min(session_start) first_session
      from sessions where user_id is not null group by all
    )
    select customer_id, first_order_time, last_order_time, coalesce(orders, 0) orders,
      coalesce(cancellations, 0) cancellations, monetary, currency,
      round(epoch_us((select t from as_of)) - epoch_us(last_order_time)) recency_us,
      coalesce(sessions_total, 0), coalesce(sessions_7d, 0), coalesce(sessions_30d, 0),
      coalesce(sessions_90d, 0), last_session_time,
      strftime(coalesce(first_order_time, first_session), '%Y-%m') cohort_month,
      (select t from as_of) as_of
    from ids left join o using (customer_id) left join s using (customer_id)
  """
  derived = """
    select customer_id, first_order_time, last_order_time, orders, cancellations, monetary,
      currency, round(recency_days * 86400e6) recency_us, sessions_total, sessions_7d,
      sessions_30d, sessions_90d, last_session_time, cohort_month, as_of
    from customers
  """
  assert same(con, derived, expected) > 50
  cancelled = con.execute('select count(*) from customers where cancellations > 0').fetchone()[0]
  assert cancelled > 0  # net of cancellations is exercised


def test_rfm_scores_and_segments_equal_sql(months_output):
  """Quintiles as 1 + 5 * (customers worse) // buyers, ties alike; segments from R and F."""
  con = sql(months_output)
  expected = """
    with buyers as (select * from customers where orders > 0), scored as (
      select customer_id,
        1 + (5 * (rank() over (order by recency_days desc) - 1)) // count(*) over () r,
        1 + (5 * (rank() over (order by orders) - 1)) // count(*) over () f
      from buyers
    ), money as (
      select customer_id,
        1 + (5 * (rank() over (order by monetary) - 1)) // count(*) over () m
      from buyers where monetary is not null
    )
    select customer_id, r, f, m, case
      when r = 5 and f >= 4 then 'champions'
      when r in (3, 4) and f >= 4 then 'loyal'
      when r >= 4 and f in (2, 3) then 'potential_loyalist'
      when r = 5 and f = 1 then 'new'
      when r = 4 and f = 1 then 'promising'
      when r = 3 and f = 3 then 'need_attention'
      when r = 3 and f <= 2 then 'about_to_sleep'
      when r <= 2 and f = 5 then 'cannot_lose'
      when r <= 2 and f in (3, 4) then 'at_risk'
      else 'hibernating' end
    from scored left join money using (customer_id)
    union all
    select customer_id, null, null, null, null from customers where orders = 0
  """
  derived = """
    select customer_id, recency_score, frequency_score, monetary_score, rfm_segment
    from customers
  """
  assert same(con, derived, expected) > 20
  spread = con.execute(
    'select count(distinct recency_score), count(distinct rfm_segment) from customers'
  ).fetchone()
  assert spread[0] >= 4 and spread[1] >= 3, spread  # the scores do tell customers apart


@pytest.fixture(scope='module')
def months_output(tmp_path_factory) -> str:
  """Tables of four months of orders and clickstream: cohorts with months after them."""
  inputs = tmp_path_factory.mktemp('months-in')
  generate(GeneratorConfig(output_dir=str(inputs), events=6000, days=120, seed=5))
  out = str(tmp_path_factory.mktemp('months'))
  sources = [f'events-jsonl={inputs}/events-*.jsonl.gz', f'orders-csv={inputs}/orders.csv']
  argv = ['run', *[arg for s in sources for arg in ('--source', s)], '--output', out]
  assert cli.main([*argv, '--reference-time', '2026-08-01T00:00:00Z', '--progress', 'never']) == 0
  return out


def test_retention_cohorts_equal_sql(months_output):
  con = sql(months_output)
  expected = """
    with as_of as (
      select greatest((select max(order_time) from orders), (select max(session_end) from sessions)) t
    ), last as (
      select date_trunc('month', (select t from as_of) at time zone 'UTC') last_month
    ), cohort as (
      select customer_id, date_trunc('month', min(order_time) at time zone 'UTC') first_month
      from orders where customer_id is not null group by all
    ), grid as (
      select customer_id, first_month, unnest(generate_series(first_month,
        greatest(last_month, first_month), interval 1 month)) m
      from cohort, last
    ), activity as (
      select customer_id, date_trunc('month', order_time at time zone 'UTC') m
      from orders where not is_cancellation and customer_id is not null
      union
      select user_id, date_trunc('month', session_start at time zone 'UTC')
      from sessions where user_id is not null
    ), money as (
      select customer_id, date_trunc('month', order_time at time zone 'UTC') m,
        sum(total_amount) revenue, count(distinct currency) currencies, any_value(currency) cur
      from orders where customer_id is not null group by all
    )
    select strftime(first_month, '%Y-%m') cohort_month,
      datediff('month', first_month, m) months_since,
      count(*) cohort_size, count(a.customer_id) customers_active,
      count(a.customer_id) / count(*) retention_rate,
      case when count(distinct money.cur) <= 1 and coalesce(max(money.currencies), 0) <= 1
        then coalesce(sum(money.revenue), 0) end net_revenue,
      case when count(distinct money.cur) = 1 and max(money.currencies) = 1
        then any_value(money.cur) end currency
    from grid left join activity a using (customer_id, m) left join money using (customer_id, m)
    group by all
  """
  derived = 'select * from retention_cohorts'
  assert same(con, derived, expected) > 3
  zeroth = con.execute(
    'select bool_and(retention_rate = 1) from retention_cohorts where months_since = 0'
  ).fetchone()[0]
  assert zeroth  # a customer's first order makes them active in their cohort month
  later = con.execute(
    'select count(*) from retention_cohorts where months_since > 0 and customers_active > 0'
  ).fetchone()[0]
  assert later > 0  # customers do come back in the sample


class _Sections(HTMLParser):
  """Per <section id>: its <svg> plots, their drawn patches and its table cells.

  matplotlib draws 6 patches for an empty plot (figure, axes, 4 spines) and
  one more per bar: more than 6 means the plot shows data. A heatmap is an
  <image> instead.
  """

  def __init__(self):
    super().__init__()
    self.sections: dict[str, dict[str, int]] = {}
    self.current = None
    self.in_svg = 0
    self.external: list[str] = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'section':
      self.current = attrs['id']
      self.sections[self.current] = {'svg': 0, 'patches': 0, 'cells': 0, 'images': 0}
    elif tag == 'svg':
      self.in_svg += 1
      self.sections[self.current]['svg'] += 1
    elif self.in_svg and tag == 'g' and str(attrs.get('id', '')).startswith('patch_'):
      self.sections[self.current]['patches'] += 1
    elif self.in_svg and tag == 'image':
      self.sections[self.current]['images'] += 1
    elif tag == 'td' and self.current:
      self.sections[self.current]['cells'] += 1
    if tag in ('script', 'link', 'img', 'iframe') or (
      tag == 'image' and not str(attrs.get('xlink:href', attrs.get('href', ''))).startswith('data:')
    ):
      self.external.append(tag)
    for name in ('src', 'href'):
      if str(attrs.get(name, '')).startswith(('http:', 'https:', '//')):
        self.external.append(attrs[name])

  def handle_endtag(self, tag):
    if tag == 'svg':
      self.in_svg -= 1


def test_the_report_has_every_plot_drawn_and_needs_no_network(output, capsys):
  assert cli.main(['report', '--output', output]) == 0
  path = capsys.readouterr().out.strip().removeprefix('Report: ')
  assert path == os.path.join(os.path.abspath(output), 'report.html')
  parser = _Sections()
  with open(path, encoding='utf-8') as f:
    parser.feed(f.read())
  assert list(parser.sections) == list(report.SECTIONS)
  for section, found in parser.sections.items():
    drawn = found['patches'] > 6 * found['svg'] or found['images'] > 0  # bars, or a heatmap
    assert found['svg'] >= 1 and drawn, section
  for section in ('funnel', 'item-pairs', 'dead-letters', 'accounting'):
    assert parser.sections[section]['cells'] > 4, section
  assert parser.sections['repeat-purchases']['cells'] >= 4  # a month of buyers at least
  assert parser.sections['segments']['cells'] >= 4  # two segments at least
  assert parser.external == []
  # The top pair of the table is the top pair of the item_pairs table.
  top = (
    sql(output)
    .execute('select item_a, item_b from item_pairs order by co_views + co_purchases desc, 1, 2')
    .fetchone()
  )
  assert f'<td>{top[0]}</td><td>{top[1]}</td>' in open(path, encoding='utf-8').read()


def test_report_on_a_folder_without_tables_is_a_clear_error(tmp_path, capsys):
  assert cli.main(['report', '--output', str(tmp_path / 'nope')]) == 2
  assert 'not a folder' in capsys.readouterr().err


CHROMIUM = '/usr/bin/chromium'  # `make install` puts Debian's there
# Run in the page once it has loaded: each section's plots as laid out, and every
# resource the page fetched.
PROBE = """<script>
window.addEventListener('load', () => {
  const sections = {};
  for (const section of document.querySelectorAll('section')) {
    sections[section.id] = [...section.querySelectorAll('svg')].map((svg) => {
      const box = svg.getBoundingClientRect();
      return [Math.round(box.width), Math.round(box.height)];
    });
  }
  const fetched = performance.getEntriesByType('resource').map((entry) => entry.name);
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({sections, fetched});
  document.body.appendChild(probe);
});
</script>"""


def chromium(*args: str, tmp_path) -> subprocess.CompletedProcess:
  """Headless Chromium, kept off the network (no DNS at all, no background requests)."""
  assert os.path.exists(CHROMIUM), f'{CHROMIUM} is missing: run make install'
  command = [
    CHROMIUM,
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--host-resolver-rules=MAP * ~NOTFOUND',
    f'--user-data-dir={tmp_path / "chromium-profile"}',
    '--virtual-time-budget=5000',
    *args,
  ]
  return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_the_report_renders_every_plot_in_a_browser_and_fetches_nothing(months_output, tmp_path):
  page = report.write_report(months_output)
  probed = tmp_path / 'probed.html'
  probed.write_text(open(page, encoding='utf-8').read().replace('</body>', PROBE + '</body>'))
  dom = chromium('--dump-dom', probed.as_uri(), tmp_path=tmp_path).stdout
  found = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)[1]))
  assert list(found['sections']) == list(report.SECTIONS)
  for section, boxes in found['sections'].items():
    assert boxes and all(w > 200 and h > 100 for w, h in boxes), (section, boxes)
  assert found['fetched'] == []
  screenshot = tmp_path / 'report.png'
  chromium(
    '--window-size=1100,3000', f'--screenshot={screenshot}', Path(page).as_uri(), tmp_path=tmp_path
  )
  pixels = np.asarray(Image.open(screenshot).convert('L'))
  assert pixels.shape == (3000, 1100) and (pixels < 128).mean() > 0.01  # drawn, not blank
