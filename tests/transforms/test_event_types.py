import pytest

from transforms.parse.event_types import CANONICAL_EVENT_TYPES, canonical_event_type, snake_case


@pytest.mark.parametrize(
  'raw,expected',
  [
    ('page_view', 'page_view'),
    ('PageView', 'page_view'),
    ('page-view', 'page_view'),
    ('Page View', 'page_view'),
    ('PAGE_VIEW', 'page_view'),
    ('view', 'product_view'),
    ('cart', 'add_to_cart'),
    ('AddToCart', 'add_to_cart'),
    ('order', 'purchase'),
    ('teleport', None),
    ('', None),
  ],
)
def test_canonical_event_type(raw, expected):
  assert canonical_event_type(raw) == expected


def test_every_canonical_type_maps_to_itself():
  for name in CANONICAL_EVENT_TYPES:
    assert canonical_event_type(name) == name


def test_snake_case():
  assert snake_case('  removeFromCart ') == 'remove_from_cart'
  assert snake_case('search.query') == 'search_query'
