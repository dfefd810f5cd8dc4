"""PII pseudonymisation: IPs and e-mail addresses become salted hashes.

Nothing that leaves enrichment holds a raw IP or e-mail address. A keyed
BLAKE2b hash (the salt is the key) keeps identities joinable across runs and
modes without being reversible by whoever reads the tables.

The salt comes from the environment variable ``SHOPSTREAM_PII_SALT``; a run
without it is refused (``MissingSaltError``), but for generated samples,
which may use the public ``DEFAULT_SALT``. The salt stays out of the pickled
job graph: a Pseudonymizer pickles as its salt's fingerprint, and a worker
takes the salt from its own environment (or, in the launching process, from
the Pseudonymizers made there) and refuses one whose fingerprint differs.

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
# Its last group may be an IPv4 address (::ffff:192.0.2.128): matched whole, or the
# IPv4 part outlived the token (seen: "pii-....0.2.128").
IPV6 = re.compile(
  r'(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}'
  r'(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![0-9A-Fa-f:]|\.\d)'
)
_DIGIT_DOT_DIGIT = re.compile(r'\d\.\d')
_PII = re.compile(f'{EMAIL.pattern}|{IPV4.pattern}|{IPV6.pattern}')


class MissingSaltError(ValueError):
  """No salt where one is needed: a bad set-up, reported as a bad argument."""


def salt_from_environment(allow_default: bool = False) -> bytes:
  """``SHOPSTREAM_PII_SALT``; without it the public default if ``allow_default`` (generated
  samples only), else MissingSaltError."""
  salt = os.environ.get(SALT_ENV)
  if salt:
    return salt.encode()
  if not allow_default:
    raise MissingSaltError(
      f'{SALT_ENV} is not set: IPs and e-mails would be tokenized with a public salt, '
      f'which anyone can reverse. Set it to a secret of your own (e.g. `export {SALT_ENV}='
      '$(openssl rand -hex 32)`), the same for every run whose tables are joined; only '
      'folders `shopstream generate` wrote (and marked .shopstream-generated-sample; '
      'regenerate a sample older than that marker) run without it'
    )
  _LOGGER.warning(
    '%s is not set: using the public default salt, fine for generated samples only', SALT_ENV
  )
  return DEFAULT_SALT.encode()


def fingerprint(salt: bytes) -> str:
  """Tells salts apart without giving the salt away."""
  return hashlib.blake2b(salt, digest_size=8, person=b'shopstream-salt').hexdigest()


# The salts of the Pseudonymizers made in this process, by fingerprint: what an
# in-process runner's unpickled copies use.
_KNOWN_SALTS: dict[str, bytes] = {}


def _on_worker(salt_fingerprint: str) -> Pseudonymizer:
  """A pickled Pseudonymizer, made again where it is unpickled (see the module docstring)."""
  candidates = [_KNOWN_SALTS.get(salt_fingerprint), os.environ.get(SALT_ENV, '').encode()]
  candidates.append(DEFAULT_SALT.encode())
  for salt in candidates:
    if salt and fingerprint(salt) == salt_fingerprint:
      return Pseudonymizer(salt)
  raise MissingSaltError(
    f'{SALT_ENV} on this worker is unset or not the salt the job was launched with: set the '
    'same value on every worker (on EMR the bootstrap action writes it from AWS Secrets '
    'Manager: bootstrap.sh --pii-salt-secret ID)'
  )


class Pseudonymizer:
  """Replaces identifying values with salted, deterministic tokens."""

  def __init__(self, salt: bytes):
    self._fingerprint = fingerprint(salt)
    _KNOWN_SALTS[self._fingerprint] = salt
    self._key = hashlib.blake2b(salt, digest_size=32).digest()
    self.token = functools.lru_cache(maxsize=262_144)(self._token)

  def __reduce__(self):
    # Neither the salt nor its key goes into a pickle (a job graph, a checkpoint).
    return (_on_worker, (self._fingerprint,))

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
