"""ParseAccessLog: Apache/NGINX combined log lines to Events, with dead letters.

A line is an event when it is a page request that succeeded: static assets,
non-page methods and error or redirect responses are filtered (counted by
reason, not lost). The session key is a salted hash of client IP + user agent,
the usual visitor identity of log analytics when there is no cookie.

Requests become event types by URL (ROUTES); everything else is a page_view:

    /product/<id>, /p/<id>                  product_view   product_id
    /cart/add?product=<id>[&qty=<n>]        add_to_cart    product_id, quantity
    /cart/remove?product=<id>               remove_from_cart
    /checkout/complete?order=<id>           purchase       order_id
    /search?q=<text>                        search
    /category/<id>, /c/<id>                 page_view      category_id
"""

from __future__ import annotations

import datetime as dt
import functools
import posixpath
import re
from typing import NamedTuple, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import apache_beam as beam

from transforms.dead_letters import ParseRecords, RecordError, RecordFiltered
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_time import US_PER_SECOND, EventTimeError, check_plausible
from transforms.parse import event_types
from transforms.parse.normalize import content_id
from transforms.records import (
  DEAD_LETTER_TAG,
  EVENTS_TAG,
  DeadLetter,
  Event,
  RawRecord,
  typed_outputs,
)

STEP = 'parse_access_log'

# Unrolled "normal* (special normal*)*" form: no alternation per character.
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
COMBINED_LOG = re.compile(
  r'(\S+) \S+ (\S+) \[([^\]]+)\] ' + _QUOTED + r' (\d{3}) (\d+|-)'
  r'(?: ' + _QUOTED + ' ' + _QUOTED + ')?'
)
_REQUEST = re.compile(r'([A-Z]+) (\S+)(?: HTTP/\d(?:\.\d)?)?')
_LOG_TIME = re.compile(
  r'(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})'
)
_MONTHS = {
  m: i
  for i, m in enumerate(
    ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'), 1
  )
}

STATIC_EXTENSIONS = frozenset(
  (
    'css',
    'js',
    'mjs',
    'map',
    'png',
    'jpg',
    'jpeg',
    'gif',
    'webp',
    'avif',
    'svg',
    'ico',
    'woff',
    'woff2',
    'ttf',
    'eot',
    'otf',
    'mp4',
    'webm',
    'mp3',
    'pdf',
    'txt',
    'xml',
    'json',
  )
)
PAGE_METHODS = frozenset(('GET', 'POST'))

ROUTES: tuple[tuple[re.Pattern, str, Optional[str]], ...] = (
  (re.compile(r'/(?:product|products|p)/([^/]+)/?$'), event_types.PRODUCT_VIEW, 'product_id'),
  (re.compile(r'/cart/add/?$'), event_types.ADD_TO_CART, None),
  (re.compile(r'/cart/remove/?$'), event_types.REMOVE_FROM_CART, None),
  (re.compile(r'/checkout/(?:complete|confirmation|thank-you)/?$'), event_types.PURCHASE, None),
  (re.compile(r'/search/?$'), event_types.SEARCH, None),
  (re.compile(r'/(?:category|c)/([^/]+)/?$'), event_types.PAGE_VIEW, 'category_id'),
)


def _unescape(text: str) -> str:
  return text.replace('\\"', '"').replace('\\\\', '\\') if '\\' in text else text


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=4096)
def _day_start_seconds(year: int, month: int, day: int) -> int:
  """Seconds at 00:00 UTC of a date; ValueError for dates like 31 February."""
  return (dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL) * 86_400


def parse_log_time(text: str) -> int:
  """``10/Oct/2026:13:55:36 -0700`` to UTC microseconds."""
  match = _LOG_TIME.fullmatch(text)
  if not match:
    raise EventTimeError(
      'invalid_event_time', f'log time {text[:40]!r} is not dd/Mon/yyyy:HH:MM:SS +zzzz'
    )
  day, month_name, year, hour, minute, second, sign, off_h, off_m = match.groups()
  month = _MONTHS.get(month_name.title())
  if (
    month is None
    or not 1 <= int(day) <= 31
    or int(hour) > 23
    or int(minute) > 59
    or int(second) > 60
  ):
    raise EventTimeError('invalid_event_time', f'log time {text!r} is not a real date')
  try:
    day_start = _day_start_seconds(int(year), month, int(day))
  except ValueError:
    raise EventTimeError('invalid_event_time', f'log time {text!r} is not a real date') from None
  offset = (int(off_h) * 3600 + int(off_m) * 60) * (1 if sign == '+' else -1)
  seconds = day_start + int(hour) * 3600 + int(minute) * 60 + int(second) - offset
  return seconds * US_PER_SECOND


def route(path: str) -> tuple[str, dict[str, str]]:
  """The event type of a request path and the ids its path carries."""
  for pattern, event_type, field in ROUTES:
    match = pattern.match(path)
    if match:
      return event_type, ({field: unquote(match.group(1))} if field else {})
  return event_types.PAGE_VIEW, {}


def filter_reason(method: str, path: str, status: int) -> Optional[str]:
  """Why a request is not a page event, or None when it is one."""
  if method not in PAGE_METHODS:
    return 'non_page_method'
  last_segment = path.rsplit('/', 1)[-1]
  if '.' in last_segment and last_segment.rsplit('.', 1)[-1].lower() in STATIC_EXTENSIONS:
    return 'static_asset'
  # A POST that redirects is the normal success of a form action.
  if 200 <= status < 300 or (method == 'POST' and 300 <= status < 400):
    return None
  return f'status_{status // 100}xx'


class PageRequest(NamedTuple):
  """What a page request's method, URL and status say of its event."""

  event_type: str
  product_id: Optional[str]
  category_id: Optional[str]
  quantity: Optional[int]
  order_id: Optional[str]


_SLASHES = re.compile(r'/{2,}')


def request_path(target: str) -> tuple[str, str]:
  """(path, query) of a request target, the path normalised as a server resolves it.

  An origin-form target is a path: "//favicon.ico" is not a host (urlsplit
  reads one, and a real log's favicon requests became page views), runs of
  slashes are one, and "." and ".." segments are resolved.
  """
  if not target.startswith('/'):
    url = urlsplit(target)  # absolute form (a proxy's request line)
    path, query = url.path or '/', url.query
  else:
    path, _, query = target.partition('#')[0].partition('?')
  path = _SLASHES.sub('/', path)
  if '/.' in path:
    trailing = path.endswith(('/', '/.', '/..'))
    path = posixpath.normpath(path) + ('/' if trailing and path != '/' else '')
    path = _SLASHES.sub('/', path)
  return path, query


def page_request(method: str, target: str, status: int) -> PageRequest:
  """The event fields of a request; raises RecordFiltered when it is no page event."""
  path, url_query = request_path(target)
  reason = filter_reason(method, path, status)
  if reason:
    raise RecordFiltered(reason)
  event_type, ids = route(path)
  query = parse_qs(url_query) if url_query and event_type != event_types.PAGE_VIEW else {}
  quantity = _first(query, 'qty', 'quantity')
  return PageRequest(
    event_type=event_type,
    product_id=ids.get('product_id') or _first(query, 'product', 'sku', 'id'),
    category_id=ids.get('category_id'),
    quantity=int(quantity)
    if quantity and quantity.isdigit() and 0 < int(quantity) <= 1_000_000
    else None,
    order_id=_first(query, 'order', 'order_id') if event_type == event_types.PURCHASE else None,
  )


class AccessLogParser:
  """The parse function for one combined-log line; a class so its config pickles."""

  def __init__(self, pseudonymizer: Pseudonymizer, now_us: int):
    self.pseudonymizer = pseudonymizer
    self.now_us = now_us

  def __call__(self, record: RawRecord) -> Event:
    payload = record.payload.rstrip(b'\r\n')
    if not payload.strip():
      raise RecordFiltered('blank_line')
    try:
      line = payload.decode('utf-8')
    except UnicodeDecodeError:
      # Log files are bytes; Latin-1 never fails and keeps the line readable.
      line = payload.decode('latin-1')
    match = COMBINED_LOG.match(line)
    if not match:
      raise RecordError.single('malformed_log_line', 'line is not in combined log format')
    ip, user, log_time, request, status_text, _, referrer, user_agent = match.groups()
    status = int(status_text)
    request_match = _REQUEST.fullmatch(_unescape(request))
    if request_match is None and not 200 <= status < 300:
      # Scanners and TLS probes: the server refused them, they are no page.
      raise RecordFiltered(f'status_{status // 100}xx')
    problems = []
    event_time = None
    try:
      event_time = parse_log_time(log_time)
      check_plausible(event_time, self.now_us)
    except EventTimeError as e:
      problems.append((e.code, str(e)))
      event_time = None
    if not request_match:
      problems.append(
        ('malformed_request', f'request {request[:80]!r} is not "METHOD URL PROTOCOL"')
      )
    if problems:
      raise RecordError(problems, event_time)
    method, target = request_match.groups()  # type: ignore[union-attr]
    page = page_request(method, target, status)
    user_agent = _unescape(user_agent) if user_agent and user_agent != '-' else None
    referrer = _unescape(referrer) if referrer and referrer != '-' else None
    return Event(
      event_id=content_id(payload),
      event_type=page.event_type,
      event_time=event_time,  # type: ignore[arg-type]
      user_id=user if user != '-' else None,
      anonymous_id=self.pseudonymizer.token(f'{ip}|{user_agent or ""}'),
      session_id=None,
      product_id=page.product_id,
      category_id=page.category_id,
      category_path=None,
      brand=None,
      product_title=None,
      price=None,
      currency=None,
      quantity=page.quantity,
      order_id=page.order_id,
      page_url=target,
      referrer=referrer,
      browser=None,
      os=None,
      device_class=None,
      is_bot=None,
      country=None,
      channel=None,
      utm_source=None,
      utm_medium=None,
      utm_campaign=None,
      utm_term=None,
      utm_content=None,
      properties=None,
      source=record.source,
      ip=ip,
      user_agent=user_agent,
    )


def _first(query: dict[str, list[str]], *names: str) -> Optional[str]:
  for name in names:
    values = query.get(name)
    if values and values[0].strip():
      return values[0].strip()
  return None


class ParseAccessLog(beam.PTransform):
  """RawRecords of combined-log lines to Events; the rest filtered or dead-lettered."""

  def __init__(self, pseudonymizer: Pseudonymizer, now_us: int):
    super().__init__()
    self._parser = AccessLogParser(pseudonymizer, now_us)

  def expand(self, records):
    outputs = records | 'ParseLogLines' >> beam.ParDo(
      ParseRecords(self._parser, STEP)
    ).with_output_types(Event).with_outputs(DEAD_LETTER_TAG, main=EVENTS_TAG)
    return typed_outputs(outputs, **{DEAD_LETTER_TAG: DeadLetter})
