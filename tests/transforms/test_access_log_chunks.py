"""The access-log chunk parser gives each line the line parser's outcome.

Lines of every shape (the fixture, generated traffic, hand-made edge cases,
random mutations) go through parse_chunk; the lines it decides must come out
exactly as AccessLogParser makes them (every column, every filter reason), and
the lines it leaves must be those the column rules do not cover.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from tests.conftest import NOW_US, TEST_SALT, fixture_path
from tests.transforms import chunk_agreement
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.parse.access_log_chunks import AccessLogChunkParser, log_times_us
from transforms.parse.line_chunks import plain_lines
from transforms.parse.parse_access_log import parse_log_time
from transforms.records import LineChunk, RawRecord

PARSER = AccessLogChunkParser(Pseudonymizer(TEST_SALT), NOW_US)
UA = 'Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0'

# Plain lines: each one is for the column path (asserted below).
PLAIN = [
  f'10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "GET /product/SKU-1 HTTP/1.1" 200 512 "-" "{UA}"',
  f'10.0.0.1 - C-7 [01/mar/2026:10:00:01 -0530] "POST /cart/add?product=SKU-1&qty=2 HTTP/1.1"'
  f' 303 0 "https://shop.example/p" "{UA}"',
  '10.0.0.2 - - [29/Feb/2024:23:59:60 +0000] "GET /checkout/complete?order=O-1 HTTP/1.0" 200 1',
  '10.0.0.3 - - [31/Dec/2025:00:00:00 +1400] "GET / HTTP/2" 200 - "" ""',
  '10.0.0.3 - - [31/Dec/2025:00:00:00 +0000] "GET /search?q=tent" 200 10 "-" "-" trailing "x"',
  '10.0.0.4 - - [01/Mar/2026:10:00:00 +0100] "GET /static/app.css HTTP/1.1" 200 9 "-" "a"',
  '10.0.0.4 - - [01/Mar/2026:10:00:00 +0100] "HEAD / HTTP/1.1" 200 9 "-" "a"',
  '10.0.0.4 - - [01/Mar/2026:10:00:00 +0100] "GET /missing HTTP/1.1" 404 9 "-" "a"',
  '10.0.0.5 - - [01/Mar/2026:10:00:00 +0100] "GET /c/12?page=2 HTTP/1.1" 200 9 "-" "a"',
  '10.0.0.5 - - [01/Mar/2026:10:00:00 +0100] "GET /p/%E2%82%AC HTTP/1.1" 200 9 "ref"',
  # Near misses of the referrer and agent: the request's fields are still read.
  '10.0.0.6 - - [01/Mar/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 9  "-" "a"',
  '10.0.0.6 - - [01/Mar/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 9x "-" "a"',
  '10.0.0.6 - - [01/Mar/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 9 "-"  "a"',
  '10.0.0.6 - - [01/Mar/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 9 "-" "a',
]
# Lines the line parser must decide: escapes, bytes, hosts, bad times and shapes.
OTHER = [
  f'10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "GET /a\\"b HTTP/1.1" 200 5 "-" "{UA}"',
  f'10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "GET /caf\u00e9 HTTP/1.1" 200 5 "-" "{UA}"',
  '10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "GET //evil.example/x HTTP/1.1" 200 5',
  '10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "GET http://shop.example/p/1 HTTP/1.1" 200 5',
  '10.0.0.1 - - [30/Feb/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5',
  '10.0.0.1 - - [01/Foo/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5',
  '10.0.0.1 - - [01/Mar/2026:24:00:00 +0100] "GET / HTTP/1.1" 200 5',
  '10.0.0.1 - - [01/Mar/1994:10:00:00 +0100] "GET / HTTP/1.1" 200 5',
  '10.0.0.1 - - [01/Mar/2099:10:00:00 +0100] "GET / HTTP/1.1" 200 5',
  '10.0.0.1 - - [1/Mar/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5',
  '10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "\\x16\\x03\\x01" 400 5',
  '10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "GET /a b HTTP/1.1" 200 5',
  '10.0.0.1 - - [01/Mar/2026:10:00:00\t+0100] "GET / HTTP/1.1" 200 5',
  '10.0."0.1 - - [01/Mar/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5',
  'not a log line',
  '',
  '   ',
]


def records_of(lines: list) -> list[RawRecord]:
  return chunk_agreement.records_of(lines, 'access-log:test')


def assert_same_outcomes(records: list[RawRecord]) -> set[int]:
  return chunk_agreement.assert_same_outcomes(PARSER, records)


def test_plain_lines_take_the_column_path_with_the_line_parsers_outcome():
  records = records_of(PLAIN)
  assert assert_same_outcomes(records) == set()
  chunk = PARSER.parse_chunk(LineChunk.of_records(records))
  assert chunk.filtered == {'static_asset': 1, 'non_page_method': 1, 'status_4xx': 1}
  assert chunk.table.num_rows == 11


def test_other_lines_are_left_to_the_line_parser():
  records = records_of(OTHER + PLAIN)
  left = assert_same_outcomes(records)
  assert left == set(range(1, len(OTHER) + 1))


def test_fixture_and_generated_logs(tmp_path):
  generate(GeneratorConfig(output_dir=str(tmp_path), events=3000, days=2))
  with open(tmp_path / 'access.log', 'rb') as f:
    generated = [line.rstrip(b'\r\n') for line in f]
  with open(fixture_path('access.log'), 'rb') as f:
    fixture = [line.rstrip(b'\r\n') for line in f]
  records = records_of(fixture + generated)
  left = assert_same_outcomes(records)
  # The generator's traffic is mostly plain: the column path is the common one.
  assert len(left) < len(records) / 20


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_mutated_lines(rng: random.Random):
  alphabet = b' "[]/:\\-+?=&%\t\x00\xe9azAZ09'
  assert_same_outcomes(records_of(chunk_agreement.mutated(rng, PLAIN + OTHER, alphabet)))


def test_log_times_match_parse_log_time():
  rng = random.Random(7)
  texts = []
  for _ in range(2000):
    texts.append(
      f'{rng.randint(0, 32):02d}/{rng.choice(["Jan", "feb", "FEB", "Mar", "Dec", "Abc"])}/'
      f'{rng.choice([0, 1, 1900, 2000, 2024, 2026, 2100, 9999]):04d}:'
      f'{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d} '
      f'{rng.choice("+-")}{rng.randint(0, 14):02d}{rng.choice([0, 30, 45, 99]):02d}'
    )
  times, real = log_times_us(pa.array(texts))
  for text, time_us, is_real in zip(texts, times.tolist(), real.tolist(), strict=True):
    try:
      expected = parse_log_time(text)
    except ValueError:
      assert not is_real, text
    else:
      assert is_real and time_us == expected, text


@pytest.mark.parametrize(
  'line, plain',
  [(b'abc', True), (b'', False), (b'a\\b', False), (b'a\tb', False), (b'caf\xc3\xa9', False)],
)
def test_plain_lines(line, plain):
  payloads = pa.array([b'x', line, b'y'], pa.binary())
  assert plain_lines(payloads).tolist() == [True, plain, True]
  assert plain_lines(payloads.slice(1, 1)).tolist() == [plain]
