"""Canonical events from loosely typed objects: the schema as a field table.

Every field has a converter; all of a record's field errors are collected
before it is rejected, so a dead letter says everything that is wrong with it.

    >>> event = canonical_event(
    ...     {'event_type': 'view', 'event_time': 1772362800, 'anonymous_id': 'a1'},
    ...     source='events-jsonl:x', default_currency='EUR', now_us=2**62)
    >>> event.event_type, event.event_time, event.event_id[:2]
    ('product_view', 1772362800000000, 'h-')
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

import orjson

from transforms.dead_letters import FieldError, RecordError
from transforms.event_time import EventTimeError, check_plausible, parse_event_time
from transforms.parse.event_types import canonical_event_type
from transforms.records import Event

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 8192
MAX_QUANTITY = 1_000_000
MONEY_PLACES = 4  # the Parquet money columns are decimal128(18, 4)
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
_MAX_MONEY = Decimal(10) ** (18 - MONEY_PLACES)


def _text(max_length: int) -> Callable[[str, Any], Optional[str]]:
  def convert(field: str, value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
      raise FieldError('invalid_type', f'{field} must be a string, got {type(value).__name__}')
    text = value.strip() if isinstance(value, str) else str(value)
    if len(text) > max_length:
      raise FieldError('field_too_long', f'{field} is {len(text)} characters (max {max_length})')
    return text or None

  return convert


def to_money(field: str, value: Any) -> Optional[str]:
  """A canonical decimal string with at most MONEY_PLACES places."""
  if isinstance(value, bool) or not isinstance(value, (str, int, float)):
    raise FieldError('invalid_price', f'{field} must be a number, got {type(value).__name__}')
  if isinstance(value, str) and not value.strip():
    return None
  try:
    # repr keeps a float's shortest round-trip digits (19.99, not 19.989999...).
    amount = Decimal(value.strip() if isinstance(value, str) else repr(value))
  except InvalidOperation:
    raise FieldError('invalid_price', f'{field} is not a decimal number: {value!r}') from None
  if not amount.is_finite() or abs(amount) >= _MAX_MONEY:
    raise FieldError('invalid_price', f'{field} is not a finite amount: {value!r}')
  if amount < 0:
    raise FieldError('invalid_price', f'{field} is negative: {value!r}')
  rounded = amount.quantize(_MONEY_QUANTUM)
  if rounded != amount:
    raise FieldError('invalid_price', f'{field} has more than {MONEY_PLACES} decimal places')
  return format(amount.normalize(), 'f')  # '19.99', '100': no exponent, no padding


def to_currency(field: str, value: Any) -> Optional[str]:
  if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
    raise FieldError('invalid_currency', f'{field} must be an ISO-4217 code, got {value!r}')
  return value.strip().upper()


def to_quantity(field: str, value: Any) -> Optional[int]:
  if isinstance(value, str):
    try:
      number: Any = float(value.strip())
    except ValueError:
      raise FieldError('invalid_quantity', f'{field} is not a number: {value!r}') from None
  elif isinstance(value, (int, float)) and not isinstance(value, bool):
    number = value
  else:
    raise FieldError('invalid_quantity', f'{field} must be a number, got {type(value).__name__}')
  if not math.isfinite(number) or number != int(number):
    raise FieldError('invalid_quantity', f'{field} is not a whole number: {value!r}')
  if not 0 < number <= MAX_QUANTITY:
    raise FieldError(
      'invalid_quantity', f'{field} must be between 1 and {MAX_QUANTITY:,}: {value!r}'
    )
  return int(number)


def to_properties(field: str, value: Any) -> Optional[dict]:
  if not isinstance(value, dict):
    raise FieldError('invalid_properties', f'{field} must be an object, got {type(value).__name__}')
  return value


_ID = _text(MAX_ID_LENGTH)
_TEXT = _text(MAX_TEXT_LENGTH)

# (field, converter) for the optional fields; event_id, event_type,
# event_time and identity have rules of their own in canonical_event.
OPTIONAL_FIELDS: tuple[tuple[str, Callable[[str, Any], Any]], ...] = (
  ('user_id', _ID),
  ('anonymous_id', _ID),
  ('product_id', _ID),
  ('category_id', _ID),
  ('order_id', _ID),
  ('price', to_money),
  ('currency', to_currency),
  ('quantity', to_quantity),
  ('page_url', _TEXT),
  ('referrer', _TEXT),
  ('user_agent', _TEXT),
  ('ip', _ID),
  ('properties', to_properties),
)
_INDEX = {name: i for i, name in enumerate(Event._fields)}
_FIELD_TABLE = {name: (_INDEX[name], convert) for name, convert in OPTIONAL_FIELDS}
(
  _EVENT_ID,
  _EVENT_TYPE,
  _EVENT_TIME,
  _USER_ID,
  _ANONYMOUS_ID,
  _PRICE,
  _CURRENCY,
  _PROPERTIES,
  _SOURCE,
) = (
  _INDEX[name]
  for name in (
    'event_id',
    'event_type',
    'event_time',
    'user_id',
    'anonymous_id',
    'price',
    'currency',
    'properties',
    'source',
  )
)
_IDENTITY_FIELDS = frozenset({'user_id', 'anonymous_id'})
KNOWN_FIELDS = frozenset(
  ['event_id', 'event_type', 'event_time'] + [name for name, _ in OPTIONAL_FIELDS]
)


# Copying an empty hash costs less than building one from keywords (0.54 s against
# 0.64 s for the ids of 200k log lines); copies never touch it.
_EMPTY_ID_HASH = hashlib.blake2b(digest_size=16)


def content_id(content: bytes) -> str:
  """A deterministic event id derived from a record's content."""
  digest = _EMPTY_ID_HASH.copy()
  digest.update(content)
  return 'h-' + digest.hexdigest()


def canonical_event(
  obj: dict,
  *,
  source: str,
  default_currency: str,
  now_us: int,
  id_content: Optional[bytes] = None,
) -> Event:
  """Validates and normalises one event object; raises RecordError if unusable.

  ``id_content`` is what a missing event_id is derived from; by default the
  object itself with sorted keys, so formatting does not change the id.
  """
  problems: list[tuple[str, str]] = []
  failed: set[str] = set()
  extra: dict[str, Any] = {}
  # Filled by position: building the 30-field record from keywords and
  # dict look-ups cost more than all the validation (measured).
  row: list[Any] = [None] * len(Event._fields)

  for name, raw in obj.items():
    field = _FIELD_TABLE.get(name)
    if field is None:
      if name not in KNOWN_FIELDS:
        extra[name] = raw
      continue
    if raw is None:
      continue
    index, convert = field
    try:
      row[index] = convert(name, raw)
    except FieldError as e:
      failed.add(name)
      problems.append((e.code, str(e)))

  event_type = None
  raw_type = obj.get('event_type')
  if raw_type is None or (isinstance(raw_type, str) and not raw_type.strip()):
    problems.append(('missing_event_type', 'event_type is missing'))
  elif not isinstance(raw_type, str):
    problems.append(('missing_event_type', f'event_type must be a string, got {raw_type!r}'))
  else:
    event_type = canonical_event_type(raw_type)
    if event_type is None:
      problems.append(
        ('unknown_event_type', f'event_type {raw_type[:80]!r} is not in the vocabulary')
      )

  event_time = None
  raw_time = obj.get('event_time')
  if raw_time is None:
    problems.append(('missing_event_time', 'event_time is missing'))
  else:
    try:
      event_time = parse_event_time(raw_time)
      check_plausible(event_time, now_us)
    except EventTimeError as e:
      failed.add('event_time')
      problems.append((e.code, str(e)))
    except OverflowError:
      failed.add('event_time')
      problems.append(('invalid_event_time', f'event_time {raw_time!r} is out of range'))

  if not row[_USER_ID] and not row[_ANONYMOUS_ID] and not failed & _IDENTITY_FIELDS:
    problems.append(('missing_identity', 'neither user_id nor anonymous_id is present'))

  event_id = None
  raw_id = obj.get('event_id')
  if raw_id is not None:
    try:
      event_id = _ID('event_id', raw_id)
    except FieldError as e:
      problems.append((e.code, str(e)))

  if problems:
    readable_time = None if 'event_time' in failed else event_time
    raise RecordError(problems, readable_time)

  if event_id is None:
    event_id = content_id(
      id_content if id_content is not None else orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    )
  properties = row[_PROPERTIES]
  if properties or extra:
    row[_PROPERTIES] = orjson.dumps(
      {**(properties or {}), **extra}, option=orjson.OPT_SORT_KEYS
    ).decode()
  else:
    row[_PROPERTIES] = None
  if row[_PRICE] is not None and row[_CURRENCY] is None:
    row[_CURRENCY] = default_currency
  row[_EVENT_ID] = event_id
  row[_EVENT_TYPE] = event_type
  row[_EVENT_TIME] = event_time
  row[_SOURCE] = source
  return Event._make(row)
