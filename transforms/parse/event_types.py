"""The event-type vocabulary: canonical names and the synonyms mapped onto them.

>>> canonical_event_type('AddToCart')
'add_to_cart'
>>> canonical_event_type('view')
'product_view'
"""

from __future__ import annotations

import functools
import re
from typing import Optional

PAGE_VIEW = 'page_view'
PRODUCT_VIEW = 'product_view'
ADD_TO_CART = 'add_to_cart'
REMOVE_FROM_CART = 'remove_from_cart'
PURCHASE = 'purchase'
SEARCH = 'search'

CANONICAL_EVENT_TYPES = frozenset(
  {PAGE_VIEW, PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, PURCHASE, SEARCH}
)

# Names legacy trackers and partner feeds use for the same things, after
# snake-casing. Extending this set and replaying dead letters with reason
# unknown_event_type is how a new feed is taken on.
SYNONYMS = {
  'pageview': PAGE_VIEW,
  'page': PAGE_VIEW,
  'screen_view': PAGE_VIEW,
  'view': PRODUCT_VIEW,
  'product': PRODUCT_VIEW,
  'product_detail': PRODUCT_VIEW,
  'view_item': PRODUCT_VIEW,
  'cart': ADD_TO_CART,
  'add': ADD_TO_CART,
  'add_cart': ADD_TO_CART,
  'cart_add': ADD_TO_CART,
  'remove': REMOVE_FROM_CART,
  'cart_remove': REMOVE_FROM_CART,
  'remove_from_basket': REMOVE_FROM_CART,
  'add_to_basket': ADD_TO_CART,
  'order': PURCHASE,
  'transaction': PURCHASE,
  'checkout_complete': PURCHASE,
  'buy': PURCHASE,
  'search_query': SEARCH,
}

_CAMEL_BOUNDARY = re.compile(r'(?<=[a-z0-9])(?=[A-Z])')
_SEPARATORS = re.compile(r'[\s\-.:/]+')


def snake_case(text: str) -> str:
  """'AddToCart', 'add-to-cart' and 'Add To Cart' all become 'add_to_cart'."""
  text = _CAMEL_BOUNDARY.sub('_', text.strip())
  return _SEPARATORS.sub('_', text).lower().strip('_')


@functools.lru_cache(maxsize=4096)
def canonical_event_type(text: str) -> Optional[str]:
  """The canonical event type for a raw name, or None when it is unknown."""
  name = snake_case(text)
  if name in CANONICAL_EVENT_TYPES:
    return name
  return SYNONYMS.get(name)
