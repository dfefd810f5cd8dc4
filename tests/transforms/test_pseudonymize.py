import base64
import bz2
import ipaddress
import os
import pickle
import subprocess
import sys
from typing import Optional

import pytest
from apache_beam.internal import pickler

from transforms.enrich.pseudonymize import (
  DEFAULT_SALT,
  SALT_ENV,
  TOKEN_PREFIX,
  MissingSaltError,
  Pseudonymizer,
  salt_from_environment,
)


def test_tokens_are_salted_and_stable(pseudonymizer):
  assert pseudonymizer.token('x') == pseudonymizer.token('x')
  assert pseudonymizer.token('x') != Pseudonymizer(b'other salt').token('x')
  assert pickle.loads(pickle.dumps(pseudonymizer)).token('x') == pseudonymizer.token('x')


def test_scrub_replaces_emails_and_ips_only(pseudonymizer):
  text = '/a?e=Jane%40Example.com&ip=203.0.113.9&v6=2001:db8::1&t=12:30:45&ver=999.1.1.1&sku=SKU-1'
  scrubbed = pseudonymizer.scrub(text)
  for pii in ('Jane%40Example.com', '203.0.113.9', '2001:db8::1'):
    assert pii not in scrubbed
  for kept in ('t=12:30:45', 'ver=999.1.1.1', 'sku=SKU-1'):
    assert kept in scrubbed
  assert scrubbed.count(TOKEN_PREFIX) == 3
  # An address written two ways is one person.
  assert pseudonymizer.scrub('jane@example.com') == pseudonymizer.scrub('Jane%40example.com')


def test_ids_without_pii_are_untouched(pseudonymizer):
  for value in ('C-42', 'anon-0001-ab', None, ''):
    assert pseudonymizer.identity(value) == value


SECRET = b'secret-salt-3b8f0c1d9e'


def test_without_a_salt_a_run_is_refused_naming_the_variable(monkeypatch):
  monkeypatch.delenv(SALT_ENV)
  with pytest.raises(MissingSaltError, match=f'{SALT_ENV} is not set'):
    salt_from_environment()
  assert salt_from_environment(allow_default=True) == DEFAULT_SALT.encode()  # samples only
  monkeypatch.setenv(SALT_ENV, 'mine')
  assert salt_from_environment() == b'mine'


def test_the_salt_stays_out_of_a_pickle():
  pseudonymizer = Pseudonymizer(SECRET)
  pickled = pickler.dumps(pseudonymizer)  # as Beam pickles a DoFn: bz2, then base64
  raw = bz2.decompress(base64.b64decode(pickled))
  assert SECRET not in raw and pseudonymizer._key not in raw
  assert pickler.loads(pickled).token('203.0.113.9') == pseudonymizer.token('203.0.113.9')


UNPICKLE = """
import pickle, sys
from transforms.enrich.pseudonymize import MissingSaltError
try:
  print(pickle.loads(sys.stdin.buffer.read()).token('203.0.113.9'))
except MissingSaltError as e:
  print('refused:', e)
"""


def unpickle_elsewhere(pickled: bytes, salt: Optional[str]) -> str:
  """What another process (a worker) makes of a pickled Pseudonymizer, with its own salt."""
  env = {k: v for k, v in os.environ.items() if k != SALT_ENV}
  if salt is not None:
    env[SALT_ENV] = salt
  done = subprocess.run(
    [sys.executable, '-c', UNPICKLE], input=pickled, capture_output=True, env=env, check=True
  )
  return done.stdout.decode().strip()


def test_a_worker_takes_the_salt_from_its_environment_and_refuses_another():
  pseudonymizer = Pseudonymizer(SECRET)
  pickled = pickle.dumps(pseudonymizer)
  assert unpickle_elsewhere(pickled, SECRET.decode()) == pseudonymizer.token('203.0.113.9')
  for wrong in (None, 'another-salt'):
    answer = unpickle_elsewhere(pickled, wrong)
    assert answer.startswith('refused:') and SALT_ENV in answer, answer


@pytest.mark.parametrize(
  'text, address',
  [
    ('from ::ffff:192.0.2.128 today', '::ffff:192.0.2.128'),
    ('ends with 2001:db8::1.', '2001:db8::1'),
    ('ADDR 2001:DB8::A:B, then', '2001:db8::a:b'),
  ],
)
def test_ipv6_addresses_go_whole_also_with_an_ipv4_tail_or_a_full_stop(
  pseudonymizer, text, address
):
  scrubbed = pseudonymizer.scrub(text)
  assert pseudonymizer.token(str(ipaddress.ip_address(address))) in scrubbed
  assert not any(part in scrubbed for part in ('192', '0.2.128', 'db8', 'DB8'))
