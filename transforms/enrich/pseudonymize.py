"""PII pseudonymisation: IPs and e-mail addresses become salted hashes.

Nothing that leaves enrichment holds a raw IP or e-mail address. A keyed
BLAKE2b hash (the salt is the key) keeps identities joinable across runs and
modes without being reversible by whoever reads the tables.

The salt comes from the environment variable ``SHOPSTREAM_PII_SALT``. Local
runs without it use ``DEFAULT_SALT``, which is public: set your own salt for
any data that matters.

    >>> p = Pseudonymizer(b'test-salt')
    >>> p.scrub('mailto:jane.doe@example.com from 203.0.113.9')
    'mailto:pii-772cecb55c1af2850195c3cc from pii-f2912d08aeed6b7cc94894c8'
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import os
import re
from typing import Optional

_LOGGER = logging.getLogger(__name__)

SALT_ENV = 'SHOPSTREAM_PII_SALT'
DEFAULT_SALT = 'shopstream-local-default-salt'
TOKEN_PREFIX = 'pii-'

EMAIL = re.compile(r'[A-Za-z0-9._%+\-]+(?:@|%40)[A-Za-z0-9.\-]+\.[A-Za-z]{2,}')
IPV4 = re.compile(r'(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])')
# An IPv6 address has at least two colons and only hex digits between them.
IPV6 = re.compile(r'(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])')
_DIGIT_DOT_DIGIT = re.compile(r'\d\.\d')
_PII = re.compile(f'{EMAIL.pattern}|{IPV4.pattern}|{IPV6.pattern}')


def salt_from_environment() -> bytes:
  salt = os.environ.get(SALT_ENV)
  if not salt:
    _LOGGER.warning(
      '%s is not set: using the public default salt, fine for local samples only', SALT_ENV
    )
    salt = DEFAULT_SALT
  return salt.encode()


class Pseudonymizer:
  """Replaces identifying values with salted, deterministic tokens."""

  def __init__(self, salt: bytes):
    self._salt = salt
    self._key = hashlib.blake2b(salt, digest_size=32).digest()
    self.token = functools.lru_cache(maxsize=262_144)(self._token)

  def __reduce__(self):
    # The cache does not pickle; workers rebuild it from the salt.
    return (Pseudonymizer, (self._salt,))

  def _token(self, value: str) -> str:
    digest = hashlib.blake2b(value.encode(), key=self._key, digest_size=12).hexdigest()
    return TOKEN_PREFIX + digest

  def scrub(self, text: Optional[str]) -> Optional[str]:
    """Text with every e-mail address and IP address in it replaced by a token."""
    if not text:
      return text
    # Cheap substring tests first: most ids and URLs hold none of the shapes.
    if (
      '@' in text
      or '%40' in text
      or text.count(':') >= 2
      or ('.' in text and _DIGIT_DOT_DIGIT.search(text))
    ):
      return _PII.sub(self._replace_match, text)
    return text

  def _replace_match(self, match: re.Match) -> str:
    found = match.group(0)
    if '@' in found or '%40' in found:
      return self.token(found.replace('%40', '@').lower())
    try:
      # The patterns are loose (times look like IPv6); only real addresses go.
      return self.token(str(ipaddress.ip_address(found)))
    except ValueError:
      return found

  def identity(self, value: Optional[str]) -> Optional[str]:
    """An id kept as is, unless it is (or contains) an e-mail or IP address."""
    return self.scrub(value)
