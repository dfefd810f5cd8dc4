import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from transforms.orders import BuildOrders, number_lines, summarize_order
from transforms.records import ORDER_LINES_TAG, ORDERS_TAG, OrderLine


def line(order_id, position, amount='10', quantity=1, line_type='product', source='s', **kw):
  values = dict(
    order_id=order_id,
    line_no=None,
    product_id='P',
    description=None,
    quantity=quantity,
    unit_price=amount,
    amount=amount,
    currency='EUR',
    line_type=line_type,
    is_cancellation=order_id.startswith('C'),
    order_time=1_000 + position,
    customer_id='c1',
    country='GB',
    country_name='United Kingdom',
    category_id=None,
    category_path=None,
    brand=None,
    product_title=None,
    source=source,
    position=position,
  )
  values.update(kw)
  return OrderLine(**values)


def test_lines_are_numbered_in_source_order_and_repeats_dropped():
  lines = [line('1', 3, product_id='B'), line('1', 1, product_id='A'), line('1', 2, product_id='C')]
  repeat = line('1', 9, product_id='A', order_time=1_001)
  kept, repeats = number_lines(lines + [repeat])
  assert [(x.line_no, x.position) for x in kept] == [(1, 1), (2, 2), (3, 3)]
  assert repeats == [repeat]


def test_order_totals_split_products_and_services():
  order = summarize_order(
    [
      line('1', 1, amount='15.3', line_no=1),
      line('1', 2, amount='18', line_type='service', line_no=2),
      line('1', 3, amount='-5', line_type='adjustment', line_no=3),
    ]
  )
  assert (order.line_count, order.total_amount, order.product_amount, order.service_amount) == (
    3,
    '28.3',
    '15.3',
    '13',
  )
  assert order.order_time == 1_001


def test_pipeline_groups_lines_of_an_order_from_several_inputs():
  first = [line('1', 1), line('2', 2)]
  second = [line('1', 1, source='t', product_id='Q'), line('C3', 5, amount='-4', quantity=-1)]
  with beam_pipeline() as p:
    out = (p | 'A' >> beam.Create(first), p | 'B' >> beam.Create(second)) | BuildOrders(3)
    assert_that(
      out[ORDERS_TAG]
      | 'Orders'
      >> beam.Map(lambda o: (o.order_id, o.line_count, o.total_amount, o.is_cancellation)),
      equal_to([('1', 2, '20', False), ('2', 1, '10', False), ('C3', 1, '-4', True)]),
      label='orders',
    )
    assert_that(
      out[ORDER_LINES_TAG] | 'Lines' >> beam.Map(lambda x: (x.order_id, x.line_no, x.source)),
      equal_to([('1', 1, 's'), ('1', 2, 't'), ('2', 1, 's'), ('C3', 1, 's')]),
      label='lines',
    )
