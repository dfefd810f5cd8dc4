import pickle

from transforms.enrich.pseudonymize import TOKEN_PREFIX, Pseudonymizer


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
