"""Realistic sample inputs with the dirt real exports have (``shopstream generate``).

Visitors browse in sessions (landing page from a channel, product views,
cart actions, sometimes a purchase); some sessions pause longer than the gap,
bots crawl for more than a day. Part of the traffic is written as canonical
JSON event lines (gzipped, one file per day), part as the legacy web server's
combined access log with static assets, redirects and errors around the pages.

The order history (orders.csv, the legacy export's CSV) holds the web orders
under their clickstream order_id, with postage lines,
cancellations, manual adjustments, stock write-offs, guest orders and the
double lines legacy dumps are known for; phone orders come from another
legacy system as a fixed-width cp1252 export (orders-fixed.txt, layout in
samples/orders-fixed/layout.yaml). catalog.csv and taxonomy.txt describe the
products.

Dirt, at realistic rates: exact duplicate lines and retries across files,
missing event ids, event-type synonyms and odd casing, timestamps as ISO with
offsets or epoch seconds/milliseconds, prices as strings, e-mail addresses as
user ids and in URLs, and broken lines (truncated JSON, binary garbage, JSON
that is not an object, missing identity, naive or absurd timestamps,
unknown event types, malformed log lines).

    generate(GeneratorConfig(output_dir='sample', events=50_000))
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import random
from dataclasses import dataclass
from typing import Optional
from zoneinfo import ZoneInfo

import orjson

from beam_pipelines.io.sources import GENERATED_SAMPLE_MARKER

SITE_HOST = 'shop.example'
ACCESS_LOG_FILE = 'access.log'
ORDERS_FILE = 'orders.csv'
ORDERS_FIXED_FILE = 'orders-fixed.txt'
CATALOG_FILE = 'catalog.csv'
TAXONOMY_FILE = 'taxonomy.txt'
# A taxonomy in the Google product taxonomy's shape; ids 1-40, like the
# /category/<id> pages of the sample site.
TAXONOMY = {
  1: 'Home & Garden',
  2: 'Home & Garden > Decor',
  3: 'Home & Garden > Decor > Candles',
  4: 'Home & Garden > Decor > Vases',
  5: 'Home & Garden > Kitchen & Dining',
  6: 'Home & Garden > Kitchen & Dining > Tableware',
  7: 'Home & Garden > Lighting',
  8: 'Home & Garden > Lighting > Lanterns',
  9: 'Apparel & Accessories',
  10: 'Apparel & Accessories > Clothing',
  11: 'Apparel & Accessories > Clothing > Shirts & Tops',
  12: 'Apparel & Accessories > Shoes',
  13: 'Apparel & Accessories > Handbags, Wallets & Cases',
  14: 'Toys & Games',
  15: 'Toys & Games > Puzzles',
  16: 'Toys & Games > Toys > Dolls',
  17: 'Arts & Entertainment > Hobbies & Creative Arts > Arts & Crafts',
  18: 'Arts & Entertainment > Party & Celebration > Gift Giving > Gift Wrapping',
  19: 'Office Supplies > Paper Products > Greeting Cards',
  20: 'Food, Beverages & Tobacco',
}
BRANDS = ('Hearth & Co', 'Nordlicht', 'Paper Moon', 'Retrospot', 'Wildflower', 'Kettle Lane')
ORDERS_HEADER = b'InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country'
COUNTRIES = ('United Kingdom',) * 8 + ('EIRE', 'France', 'Germany', 'RSA', 'Unspecified')
LEGACY_TZ = 'Europe/London'

USER_AGENTS = {
  'desktop': (
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) '
    'Chrome/124.0.0.0 Safari/537.36',
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) '
    'Version/17.4 Safari/605.1.15',
    'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) '
    'Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67',
  ),
  'mobile': (
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 '
    '(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
    'Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) '
    'Chrome/124.0.6367.82 Mobile Safari/537.36',
  ),
  'tablet': (
    'Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) '
    'Version/17.4 Mobile/15E148 Safari/604.1',
  ),
  'bot': (
    'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
    'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
    'Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)',
    'python-requests/2.31.0',
  ),
}
# (referrer, utm query) of a landing page, with weights.
ENTRANCES = (
  (None, '', 30),
  ('https://www.google.com/', '', 25),
  ('https://www.google.com/', 'utm_source=google&utm_medium=cpc&utm_campaign=spring_sale', 10),
  ('https://www.bing.com/', '', 4),
  (
    'https://www.facebook.com/',
    'utm_source=facebook&utm_medium=paid_social&utm_campaign=retarget',
    6,
  ),
  ('https://www.instagram.com/', '', 4),
  (None, 'utm_source=newsletter&utm_medium=email&utm_campaign=weekly', 8),
  ('https://blog.example.org/best-gifts', '', 5),
  ('https://partner.example.net/deals', 'utm_source=partner&utm_medium=affiliate', 3),
)
STATIC_ASSETS = ('/static/app.css', '/static/app.js', '/static/logo.svg', '/favicon.ico')
SYNONYMS = {
  'product_view': ('view', 'ProductView', 'product-view'),
  'add_to_cart': ('cart', 'AddToCart'),
  'page_view': ('pageview', 'PAGE_VIEW'),
}


@dataclass(frozen=True)
class GeneratorConfig:
  output_dir: str
  events: int = 50_000
  days: int = 3
  start: dt.date = dt.date(2026, 3, 1)
  seed: int = 7
  access_log_share: float = 0.3  # of visitors, seen only through the web server's log
  dirty_rate: float = 0.01  # broken lines, per line
  duplicate_rate: float = 0.02
  products: int = 2000


class _Writer:
  """Collects lines per output file, each with the time it belongs at."""

  def __init__(self):
    self.files: dict[str, list[tuple[float, int, bytes]]] = {}
    self._sequence = 0

  def add(self, name: str, line: bytes, t: float) -> None:
    self._sequence += 1
    self.files.setdefault(name, []).append((t, self._sequence, line))


def _visitor(rng: random.Random, n: int) -> dict:
  device = rng.choices(('desktop', 'mobile', 'tablet', 'bot'), (50, 38, 7, 5))[0]
  ip = '.'.join(
    str(x)
    for x in (
      rng.choice((24, 31, 46, 62, 77, 81, 88, 90, 95, 109, 151, 176, 185, 188, 193, 212, 213, 217)),
      rng.randrange(256),
      rng.randrange(256),
      rng.randrange(1, 255),
    )
  )
  user_id = None
  if device != 'bot' and rng.random() < 0.35:
    user_id = f'jane.doe{n}@example.com' if rng.random() < 0.1 else f'{100000 + n}'
  return {
    'anonymous_id': f'anon-{n:07d}-{rng.randrange(16**6):06x}',
    'user_id': user_id,
    'device': device,
    'ua': rng.choice(USER_AGENTS[device]),
    'ip': ip,
  }


def _session_events(rng: random.Random, visitor: dict, start_s: float, products: int) -> list[dict]:
  """One visit: a landing page, browsing, cart actions, maybe a purchase."""
  referrer, utm, _ = rng.choices(ENTRANCES, [w for *_, w in ENTRANCES])[0]
  landing = f'https://{SITE_HOST}/' + (f'?{utm}' if utm else '')
  if rng.random() < 0.02:
    landing += f'{"&" if utm else "?"}email=jane.doe{rng.randrange(999)}%40example.com'
  events = [{'event_type': 'page_view', 'page_url': landing, 'referrer': referrer, 't': start_s}]
  t = start_s
  bot = visitor['device'] == 'bot'
  length = rng.randint(20, 80) if bot else min(int(rng.expovariate(1 / 6)) + 1, 60)
  cart: list[str] = []
  for _ in range(length - 1):
    t += rng.expovariate(1 / (1200 if bot else 90))
    if not bot and rng.random() < 0.03:
      t += rng.uniform(1800, 5400)  # a pause longer than the session gap
    product = f'SKU-{int(rng.paretovariate(1.2)) % products:05d}'
    roll = rng.random()
    if bot or roll < 0.55:
      events.append(
        {
          'event_type': 'product_view',
          'product_id': product,
          'page_url': f'https://{SITE_HOST}/product/{product}',
          't': t,
        }
      )
    elif roll < 0.70:
      events.append(
        {
          'event_type': 'page_view',
          't': t,
          'page_url': f'https://{SITE_HOST}/category/{rng.randrange(40)}',
        }
      )
    elif roll < 0.80:
      events.append(
        {
          'event_type': 'search',
          't': t,
          'page_url': f'https://{SITE_HOST}/search?q=gift+{rng.randrange(50)}',
        }
      )
    elif roll < 0.93:
      cart.append(product)
      events.append(
        {
          'event_type': 'add_to_cart',
          'product_id': product,
          't': t,
          'quantity': rng.choice((1, 1, 1, 2, 3)),
          'page_url': f'https://{SITE_HOST}/cart/add?product={product}',
        }
      )
    elif cart:
      events.append(
        {
          'event_type': 'remove_from_cart',
          'product_id': cart.pop(),
          't': t,
          'page_url': f'https://{SITE_HOST}/cart/remove?product={product}',
        }
      )
  if cart and not bot and rng.random() < 0.35:
    t += rng.expovariate(1 / 120)
    order = f'ORD-{rng.randrange(10**8):08d}'
    for product in cart:
      events.append(
        {
          'event_type': 'purchase',
          'product_id': product,
          'order_id': order,
          'price': f'{rng.choice((4.99, 9.5, 19.99, 24.0, 49.9, 129.0))}',
          'quantity': 1,
          't': t,
          'page_url': f'https://{SITE_HOST}/checkout/complete?order={order}',
        }
      )
  return events


def _time_value(rng: random.Random, t: float):
  roll = rng.random()
  if roll < 0.6:
    return (
      dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec='milliseconds').replace('+00:00', 'Z')
    )
  if roll < 0.75:
    tz = dt.timezone(dt.timedelta(hours=rng.choice((-5, 1, 2, 9))))
    return dt.datetime.fromtimestamp(t, tz).isoformat(timespec='seconds')
  if roll < 0.9:
    return int(t * 1000)
  return int(t)


def _json_line(rng: random.Random, visitor: dict, event: dict, n: int) -> bytes:
  record = {
    'event_id': f'evt-{n:09d}' if rng.random() < 0.9 else None,
    'event_type': event['event_type'],
    'event_time': _time_value(rng, event['t']),
    'anonymous_id': visitor['anonymous_id'],
    'user_id': visitor['user_id'],
  }
  if event['event_type'] in SYNONYMS and rng.random() < 0.1:
    record['event_type'] = rng.choice(SYNONYMS[event['event_type']])
  for field in ('product_id', 'order_id', 'price', 'quantity', 'page_url', 'referrer'):
    if event.get(field) is not None:
      record[field] = event[field]
  if event['event_type'] == 'purchase':
    record['currency'] = 'EUR'
  if rng.random() < 0.3:
    record['user_agent'] = visitor['ua']
    record['ip'] = visitor['ip']
  if rng.random() < 0.05:
    record['app_version'] = rng.choice(('4.2.0', '4.3.1'))  # unknown field: kept in properties
  return orjson.dumps({k: v for k, v in record.items() if v is not None})


def _log_line(
  visitor: dict, t: float, method: str, path: str, status: int, referrer: Optional[str]
) -> bytes:
  stamp = dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(hours=1))).strftime(
    '%d/%b/%Y:%H:%M:%S %z'
  )
  user = visitor['user_id'] if visitor['user_id'] and '@' not in visitor['user_id'] else '-'
  return (
    f'{visitor["ip"]} - {user} [{stamp}] "{method} {path} HTTP/1.1" {status} '
    f'{2000 + len(path) * 7} "{referrer or "-"}" "{visitor["ua"]}"'
  ).encode()


def _log_lines(rng: random.Random, visitor: dict, event: dict) -> list[tuple[float, bytes]]:
  path = event['page_url'].split(SITE_HOST, 1)[1]
  t = event['t']
  referrer = event.get('referrer')
  if event['event_type'] in ('add_to_cart', 'remove_from_cart'):
    if event.get('quantity', 1) > 1:
      path += f'&qty={event["quantity"]}'
    return [(t, _log_line(visitor, t, 'POST', path, 303, referrer))]
  lines = [(t, _log_line(visitor, t, 'GET', path, 200, referrer))]
  if visitor['device'] != 'bot':
    page = f'https://{SITE_HOST}{path}'
    for asset in STATIC_ASSETS[: rng.randint(1, len(STATIC_ASSETS))]:
      status = rng.choice((200, 200, 304))
      lines.append((t + 0.2, _log_line(visitor, t + 0.2, 'GET', asset, status, page)))
  if rng.random() < 0.02:
    lines.append((t + 1, _log_line(visitor, t + 1, 'GET', '/old-page', 301, referrer)))
  if rng.random() < 0.01:
    lines.append((t + 1, _log_line(visitor, t + 1, 'GET', '/product/GONE', 404, referrer)))
  return lines


BROKEN_JSON_LINES = (
  b'{"event_type": "page_view", "event_time": "2026-03-01T10:00:00Z", "anonymous_id": "tr',
  b'\x00\x9f\x92\x96\xff binary garbage \xfe',
  b'["not", "an", "object"]',
  b'{"event_type": "page_view", "event_time": "2026-03-01T10:00:00Z"}',
  b'{"event_type": "page_view", "event_time": "2026-03-01 10:00:00", "anonymous_id": "x1"}',
  b'{"event_type": "page_view", "event_time": "2999-01-01T00:00:00Z", "anonymous_id": "x2"}',
  b'{"event_type": "teleport", "event_time": 1772359200, "anonymous_id": "x3"}',
  b'{"event_time": 1772359200, "anonymous_id": "x4", "price": "free"}',
  b'{"event_type": "purchase", "event_time": 1772359200, "user_id": "x5", "price": "-3"}',
  b'',
)
BROKEN_LOG_LINES = (
  b'this is not a log line',
  b'81.2.69.142 - - [31/Feb/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 512 "-" "curl/8.4.0"',
  b'81.2.69.142 - - [01/Mar/2026:10:00:00 +0100] "\\x16\\x03\\x01\\x02" 400 0 "-" "-"',
  b'81.2.69.142 - - [01/Mar/2026:10:00:00 +0100] "GET /product/SKU-1 HTTP/1.1" 200',
)


def generate(config: GeneratorConfig) -> dict[str, int]:
  """Writes the sample files; returns lines written per file name."""
  rng = random.Random(config.seed)
  writer = _Writer()
  start_s = dt.datetime.combine(config.start, dt.time(), dt.UTC).timestamp()
  span_s = config.days * 86_400
  produced = visitor_no = 0
  orders: dict[str, tuple[float, dict, list[dict]]] = {}
  while produced < config.events:
    visitor_no += 1
    visitor = _visitor(rng, visitor_no)
    in_log = rng.random() < config.access_log_share
    for _ in range(1 + int(rng.expovariate(1 / 1.5))):
      session_start = start_s + rng.uniform(0, span_s - 3600)
      for event in _session_events(rng, visitor, session_start, config.products):
        if event['t'] >= start_s + span_s:
          break
        produced += 1
        day = dt.datetime.fromtimestamp(event['t'], dt.UTC).date().isoformat()
        t = event['t']
        if event['event_type'] == 'purchase':
          orders.setdefault(event['order_id'], (t, visitor, []))[2].append(event)
        if in_log:
          for line_time, line in _log_lines(rng, visitor, event):
            writer.add(ACCESS_LOG_FILE, line, line_time)
          if rng.random() < config.dirty_rate:
            writer.add(ACCESS_LOG_FILE, rng.choice(BROKEN_LOG_LINES), t)
          continue
        line = _json_line(rng, visitor, event, produced)
        name = f'events-{day}.jsonl.gz'
        writer.add(name, line, t)
        if rng.random() < config.duplicate_rate:
          # A tracker retry: the same line again, a little later in the export.
          writer.add(name, line, t + rng.uniform(0, 600))
        if rng.random() < config.dirty_rate:
          writer.add(name, rng.choice(BROKEN_JSON_LINES), t)
  for t, line in _order_export(rng, orders, config):
    writer.add(ORDERS_FILE, line, t)
  for t, line in _phone_orders(rng, config):
    writer.add(ORDERS_FIXED_FILE, line, t)
  for n, line in enumerate(_taxonomy_lines()):
    writer.add(TAXONOMY_FILE, line, n)
  for n, line in enumerate(_catalog_lines(rng, config)):
    writer.add(CATALOG_FILE, line, n)
  os.makedirs(config.output_dir, exist_ok=True)
  written = {}
  for name, entries in sorted(writer.files.items()):
    # Exports and logs are written in time order; visitors interleave.
    entries.sort()
    path = os.path.join(config.output_dir, name)
    opener = gzip.open if name.endswith('.gz') else open
    header = [ORDERS_HEADER] if name == ORDERS_FILE else []
    with opener(path, 'wb') as f:
      f.write(b'\n'.join(header + [line for _, _, line in entries]) + b'\n')
    written[name] = len(entries)
  # Marks the folder as generated: its files may run with the public default salt.
  with open(os.path.join(config.output_dir, GENERATED_SAMPLE_MARKER), 'w') as f:
    f.write('written by `shopstream generate`: synthetic data, no real person in it\n')
  return written


def _legacy_time(t: float) -> str:
  """The order system's local time, US style: 3/1/2026 9:05."""
  local = dt.datetime.fromtimestamp(t, ZoneInfo(LEGACY_TZ))
  return f'{local.month}/{local.day}/{local.year} {local.hour}:{local.minute:02d}'


def _csv_line(
  invoice: str,
  code: str,
  description: str,
  quantity: int,
  t: float,
  price: str,
  customer: str,
  country: str,
) -> bytes:
  quoted = f'"{description}"' if ',' in description else description
  return (
    f'{invoice},{code},{quoted},{quantity},{_legacy_time(t)},{price},{customer},{country}'
  ).encode('cp1252')


BROKEN_ORDER_LINES = (
  b'536999,22139,RETROSPOT TEA SET,6,12/1/2010 8:26,4.25,17850.0',  # a column short
  b'537000,22139,RETROSPOT TEA SET,six,12/1/2010 8:26,4.25,17850.0,United Kingdom',
  b'537001,22139,RETROSPOT TEA SET,6,31/31/2010 8:26,4.25,17850.0,United Kingdom',
  b'537002,22139,RETROSPOT TEA SET,6,12/1/2010 8:26,4,25,17850.0,United Kingdom',
  b'537003,22139,RETROSPOT TEA SET,-6,12/1/2010 8:26,4.25,17850.0,United Kingdom',
)


def _order_export(rng: random.Random, web_orders: dict, config: GeneratorConfig):
  """The legacy order history: web orders, cancellations, service lines and dirt."""
  orders = [
    (order_id, t, visitor, [(e['product_id'], e['price'], e.get('quantity', 1)) for e in events])
    for order_id, (t, visitor, events) in web_orders.items()
  ]
  for order_id, t, visitor, lines in orders:
    user = visitor.get('user_id')
    customer = f'{user}.0' if user and user.isdigit() else ''  # guests and e-mail logins
    country = rng.choice(COUNTRIES)
    for product, price, quantity in lines:
      line = _csv_line(order_id, product, f'ITEM {product}', quantity, t, price, customer, country)
      yield t, line
      if rng.random() < config.duplicate_rate:
        yield t, line  # the double export legacy dumps are known for
    if rng.random() < 0.6:
      yield t, _csv_line(order_id, 'POST', 'POSTAGE', 1, t, '18.00', customer, country)
    if rng.random() < 0.04:
      product, price, quantity = lines[0]
      later = t + rng.uniform(3600, 86_400)
      yield (
        later,
        _csv_line(
          f'C{order_id}', product, f'ITEM {product}', -quantity, later, price, customer, country
        ),
      )
    if rng.random() < 0.01:
      yield t, _csv_line(order_id, 'M', 'Manual', 1, t, '-5.00', customer, country)
    if rng.random() < 0.02:
      yield (
        t,
        _csv_line(
          f'{590000 + rng.randrange(9999)}',
          lines[0][0],
          'damaged',
          -3,
          t,
          '0',
          '',
          'United Kingdom',
        ),
      )
    if rng.random() < config.dirty_rate * 3:
      yield t, rng.choice(BROKEN_ORDER_LINES)


def _taxonomy_lines() -> list[bytes]:
  lines = [b'# Google_Product_Taxonomy_Version: 2021-09-21 (shopstream sample)']
  lines += [f'{category_id} - {path}'.encode() for category_id, path in TAXONOMY.items()]
  return lines + [b'not a taxonomy line']


def _catalog_lines(rng: random.Random, config: GeneratorConfig) -> list[bytes]:
  """Most products of the site; a few are missing (unknown to the join), one is listed twice."""
  lines = [b'product_id,title,brand,category_id,price,currency']
  leaves = [
    c for c in TAXONOMY if not any(p.startswith(TAXONOMY[c] + ' >') for p in TAXONOMY.values())
  ]
  for n in range(config.products):
    if rng.random() < 0.03:
      continue
    title = f'{rng.choice(("Retro", "Vintage", "Classic", "Nordic"))} item {n}'
    line = (
      f'SKU-{n:05d},"{title}, boxed",{rng.choice(BRANDS)},{rng.choice(leaves)},'
      f'{rng.choice(("2.55", "3.39", "12.75", "19.99"))},EUR'
    ).encode()
    lines.append(line)
    if n == 7:
      lines.append(line.replace(b'EUR', b'GBP'))  # listed twice: the first row wins
  return lines + [b'SKU-BAD,Broken price,Hearth & Co,3,free,EUR']


def fixed_width_record(
  invoice: str,
  code: str,
  description: str,
  quantity: int,
  t: float,
  price: str,
  customer: str,
  country: str,
) -> str:
  """One record of samples/orders-fixed/layout.yaml (100 characters)."""
  local = dt.datetime.fromtimestamp(t, ZoneInfo(LEGACY_TZ))
  cents = round(float(price) * 100)
  record = (
    f'{invoice:<7.7}{code:<12.12}{description:<30.30}{quantity:+06d}'.replace('+', '0')
    + f'{local:%y%m%d%H%M}{cents:09d}{customer:<6.6}{country:<20.20}'
  )
  assert len(record) == 100, record
  return record


def _phone_orders(rng: random.Random, config: GeneratorConfig):
  """Orders taken by phone, from the legacy system's fixed-width export."""
  start_s = dt.datetime.combine(config.start, dt.time(), dt.UTC).timestamp()
  for n in range(max(1, config.events // 400)):
    t = start_s + rng.uniform(0, config.days * 86_400)
    customer = str(200000 + rng.randrange(5000)) if rng.random() < 0.8 else ''
    country = rng.choice(COUNTRIES)
    for _ in range(rng.randint(1, 5)):
      product = f'SKU-{rng.randrange(config.products):05d}'
      price = rng.choice(('2.55', '3.39', '12.75'))
      yield (
        t,
        fixed_width_record(
          f'{580000 + n}',
          product,
          f'PHONE ITEM {product}',
          rng.randint(1, 24),
          t,
          price,
          customer,
          country,
        ).encode('cp1252'),
      )
    if rng.random() < config.dirty_rate * 5:
      yield t, b'580000 SKU-00001   TRUNCATED RECORD'
    if rng.random() < config.dirty_rate * 5:
      bad = fixed_width_record(
        f'{580000 + n}', 'SKU-00002', 'BAD QTY', 1, t, '1', customer, country
      )
      yield t, (bad[:49] + 'ABCDEF' + bad[55:]).encode('cp1252')
