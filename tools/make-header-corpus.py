#!/usr/bin/python3
"""Writes the hostile-header corpus: tests/corpus/header/*.safetensors and
MANIFEST.tsv (file, expected error code name, expected tensor or '-', what it
tests). Deterministic: running it twice gives the same bytes. Stdlib only.

Every rule of ../shared/docs/format.md §3.1 has cases here, in the reference
reader's order of checks, plus a few valid files (code `ok`). Files too big to
commit (a million open brackets, a 100,000,000-byte header, ...) are made at
test time by tests/format/corpus_test.cpp instead.

Usage: /usr/bin/python3 tools/make-header-corpus.py [OUT_DIR]
"""

import os
import struct
import sys

MAX64 = 2**64 - 1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "corpus", "header")

CASES = []  # (slug, bytes, code, tensor, what)


def prefix(n):
    """The 8-byte little-endian header length N."""
    return struct.pack("<Q", n)


def raw(header, data=b"", n=None):
    """A file: prefix(N) + header + data; N defaults to len(header)."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    return prefix(len(header) if n is None else n) + header + data


def t(name, dtype, shape, begin, end):
    """One tensor entry: "NAME":{"dtype":..,"shape":[..],"data_offsets":[..]}."""
    dims = ",".join(str(d) for d in shape)
    return '"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%s,%s]}' % (
        name, dtype, dims, begin, end)


def obj(*entries):
    return "{" + ",".join(entries) + "}"


GOOD = t("t", "U8", [4], 0, 4)  # U8 [4] at [0,4]: 4 data bytes
GOOD_BODY = '"dtype":"U8","shape":[4],"data_offsets":[0,4]'
DATA4 = b"\x01\x02\x03\x04"


def case(slug, data, code, tensor, what):
    assert "\t" not in what and "\n" not in what
    CASES.append((slug, data, code, tensor, what))


def bad(slug, header, code, tensor, what, data=DATA4):
    """A header (str or bytes) with the data of the good tensor after it."""
    case(slug, raw(header, data), code, tensor, what)


def prefix_cases():
    """Steps 1-3: the length prefix."""
    case("empty-file", b"", "header_too_small", "-", "0-byte file")
    case("one-byte", b"{", "header_too_small", "-", "1-byte file")
    case("seven-bytes", b"\x02\x00\x00\x00\x00\x00\x00", "header_too_small", "-",
         "7 bytes: one short of the prefix")
    case("n-1e8-plus-1", raw("{}", n=100_000_001), "header_too_large", "-",
         "N = 100,000,001, one above the limit")
    case("n-2pow64-minus-1", raw("{}", n=MAX64), "header_too_large", "-",
         "N = 2^64-1: 8 + N overflows")
    case("n-2pow64-minus-8", raw("{}", n=MAX64 - 7), "header_too_large", "-",
         "N = 2^64-8: 8 + N wraps to exactly 0")
    case("n-2pow64-minus-9", raw("{}", n=MAX64 - 8), "header_too_large", "-",
         "N = 2^64-9: 8 + N = 2^64-1")
    case("n-2pow63", raw("{}", n=2**63), "header_too_large", "-",
         "N = 2^63: negative as a signed 64-bit length")
    case("n-2pow32-plus-2", raw("{}", n=2**32 + 2), "header_too_large", "-",
         "N = 2^32+2: a 32-bit truncation would read 2")
    case("n-big-endian", b"\x00" * 7 + b"\x02" + b"{}", "header_too_large", "-",
         "N = 2 written big-endian")
    case("lfs-pointer", b"version https://git-lfs.github.com/spec/v1\n"
         b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
         b"size 12345\n", "header_too_large", "-", "a Git LFS pointer file")
    case("zip-archive", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 20,
         "header_too_large", "-", "a ZIP archive (PyTorch .bin)")
    case("pickle", b"\x80\x02}q\x00(X\x06\x00\x00\x00weightq\x01", "header_too_large", "-",
         "a Python pickle")
    case("html-page", b"<!DOCTYPE html><html><body>Not Found</body></html>",
         "header_too_large", "-", "an HTML error page saved as the file")
    case("n-1e8-short-file", raw("{}", n=100_000_000), "invalid_header_length", "-",
         "N = 100,000,000 (allowed) in a 10-byte file")
    case("n-one-past-eof", raw("{}", n=3), "invalid_header_length", "-",
         "N one byte past the end of the file")
    case("syoyo-abuse", raw('{"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}  ',
                            b"\x00" * 16, n=1000), "invalid_header_length", "-",
         "N = 1000 in an 88-byte file (safetensors-cpp abuse file)")
    case("prefix-only-n1", prefix(1), "invalid_header_length", "-",
         "N = 1 and nothing after the prefix")
    case("n-past-eof-bad-utf8", raw(b"\xff{", n=5), "invalid_header_length", "-",
         "past-EOF wins over invalid UTF-8")
    case("n-zero", prefix(0), "json_syntax", "-", "N = 0: an empty header")
    case("n-zero-with-data", prefix(0) + b"{}", "json_syntax", "-",
         "N = 0 followed by bytes that look like a header")
    case("n-cuts-json", raw(obj(GOOD), DATA4, n=20), "json_syntax", "t",
         "N too small: the header ends inside the JSON")


def utf8_cases():
    """Step 4: the header bytes must be strict UTF-8."""
    b = GOOD_BODY.encode()
    rows = [
        ("overlong-2", b"\xc0\xaf", "overlong 2-byte '/'"),
        ("overlong-3", b"\xe0\x80\xaf", "overlong 3-byte '/'"),
        ("overlong-4", b"\xf0\x80\x80\xaf", "overlong 4-byte '/'"),
        ("overlong-nul", b"\xc0\x80", "modified-UTF-8 NUL (C0 80)"),
        ("surrogate-d800", b"\xed\xa0\x80", "encoded surrogate U+D800"),
        ("surrogate-dfff", b"\xed\xbf\xbf", "encoded surrogate U+DFFF"),
        ("cesu8-pair", b"\xed\xa0\xbd\xed\xb8\x80", "CESU-8 surrogate pair for U+1F600"),
        ("above-10ffff", b"\xf4\x90\x80\x80", "code point U+110000"),
        ("byte-ff", b"\xff", "byte FF, never valid"),
        ("byte-f5", b"\xf5\x80\x80\x80", "lead byte F5"),
        ("lone-continuation", b"\x80", "a lone continuation byte"),
        ("latin1-name", b"caf\xe9", "Latin-1 e-acute in a tensor name"),
        ("truncated-seq", b"\xe2\x82", "a 3-byte sequence cut short"),
    ]
    for slug, junk, what in rows:
        bad("utf8-" + slug, b'{"' + junk + b'":{' + b + b"}}", "invalid_utf8", "-",
            what + " in a tensor name")
    bad("utf8-in-metadata", b'{"__metadata__":{"k":"\xc1\xbf"},' + GOOD.encode() + b"}",
        "invalid_utf8", "-", "overlong sequence in a metadata value")
    bad("utf8-in-padding", obj(GOOD).encode() + b"  \xe2\x82", "invalid_utf8", "-",
        "a truncated sequence in the trailing padding")
    bad("utf8-before-json-error", b"{\xff", "invalid_utf8", "-",
        "invalid UTF-8 wins over a JSON syntax error")
    body = "{" + GOOD_BODY + "}"
    bad("escape-lone-high", '{"\\ud800":' + body + "}", "invalid_utf8", "-",
        "lone high surrogate escape in a tensor name")
    bad("escape-lone-low", '{"\\udc00":' + body + "}", "invalid_utf8", "-",
        "lone low surrogate escape in a tensor name")
    bad("escape-high-then-ascii", '{"\\ud800\\u0041":' + body + "}", "invalid_utf8", "-",
        "high surrogate escape followed by a non-surrogate")
    bad("escape-reversed-pair", '{"\\udc00\\ud800":' + body + "}", "invalid_utf8", "-",
        "surrogate escapes in the wrong order")
    bad("escape-lone-in-dtype", '{"t":{"dtype":"\\udc00"}}', "invalid_utf8", "t",
        "lone surrogate escape in a dtype")
    bad("escape-lone-in-ignored", '{"t":{' + GOOD_BODY + ',"x":["\\udfff"]}}',
        "invalid_utf8", "t", "lone surrogate escape inside an ignored field")


def syntax_cases():
    """Step 5: strict RFC 8259 JSON."""
    good = obj(GOOD)
    rows = [
        ("spaces-only", "        ", "-", "a header of spaces only"),
        ("bom", "\ufeff" + good, "-", "a UTF-8 byte order mark"),
        ("unterminated-object", "{", "-", "an unterminated object"),
        ("unterminated-string", '{"t', "-", "an unterminated string"),
        ("trailing-garbage", good + "x", "-", "a character after the object"),
        ("two-objects", good + " {}", "-", "two top-level values"),
        ("trailing-comma-object", "{" + GOOD + ",}", "-", "a trailing comma in an object"),
        ("trailing-comma-shape", '{"t":{"dtype":"U8","shape":[4,],"data_offsets":[0,4]}}',
         "t", "a trailing comma in shape"),
        ("comment", "/*x*/" + good, "-", "a C comment"),
        ("line-comment", good + "//x", "-", "a line comment after the object"),
        ("single-quotes", "{'t':{}}", "-", "single-quoted key"),
        ("unquoted-key", "{t:{}}", "-", "an unquoted key"),
        ("missing-colon", '{"t" {}}', "-", "a missing colon"),
        ("missing-comma", '{"a":{} "b":{}}', "-", "a missing comma"),
        ("nan", '{"t":{' + GOOD_BODY + ',"x":NaN}}', "t", "NaN"),
        ("infinity", '{"t":{' + GOOD_BODY + ',"x":-Infinity}}', "t", "-Infinity"),
        ("leading-zero", '{"t":{"dtype":"U8","shape":[04],"data_offsets":[0,4]}}', "t",
         "a leading zero in a shape"),
        ("plus-sign", '{"t":{"dtype":"U8","shape":[+4],"data_offsets":[0,4]}}', "t",
         "a plus sign in a shape"),
        ("hex-number", '{"t":{"dtype":"U8","shape":[0x4],"data_offsets":[0,4]}}', "t",
         "a hexadecimal number"),
        ("capital-true", '{"t":{' + GOOD_BODY + ',"x":True}}', "t", "True"),
        ("bad-escape", '{"t":{' + GOOD_BODY + ',"x":"a\\qb"}}', "t", "the escape \\q"),
        ("short-u-escape", '{"t\\u12":{}}', "-", "a \\u escape with 2 hex digits"),
        ("raw-tab-in-string", '{"a\tb":{}}', "-", "a raw tab inside a string"),
        ("raw-newline-in-string", '{"a\nb":{}}', "-", "a raw line feed inside a string"),
        ("form-feed-padding", good + "\f", "-", "form feed as padding"),
        ("vertical-tab-padding", "\v" + good, "-", "vertical tab as padding"),
        ("nbsp-padding", good + "\u00a0", "-", "U+00A0 as padding"),
        ("nul-after-object", good + "\0   ", "-", "a NUL right after the object"),
        ("nul-padding", good + "\0" * 6, "-", "NUL bytes as padding"),
        ("nul-in-key", '{"t\0":{}}', "-", "a raw NUL inside a key"),
        ("number-1e400", '{"t":{' + GOOD_BODY + ',"x":1e400}}', "t",
         "a number beyond the double range"),
        ("number-400-digits", '{"t":{' + GOOD_BODY + ',"x":1' + "0" * 400 + "}}", "t",
         "a 401-digit integer"),
        ("syntax-after-schema", '{"t":5, ', "-",
         "a syntax error wins over an earlier schema error"),
    ]
    for slug, header, tensor, what in rows:
        bad("json-" + slug, header, "json_syntax", tensor, what)


def nest(k, open_, close):
    return open_ * k + "1" + close * k


def depth_cases():
    """Step 5: containers nested deeper than 127."""
    bad("depth-128-arrays", "[" * 128 + "]" * 128, "json_too_deep", "-",
        "128 nested arrays at the top level")
    bad("depth-128-in-field", '{"t":{' + GOOD_BODY + ',"x":' + nest(126, "[", "]") + "}}",
        "json_too_deep", "t", "2 + 126 arrays in an ignored tensor field")
    bad("depth-128-objects", '{"t":{' + GOOD_BODY + ',"x":' + nest(126, '{"k":', "}") + "}}",
        "json_too_deep", "t", "2 + 126 objects in an ignored tensor field")
    bad("depth-128-metadata", '{"__metadata__":{"k":' + "[" * 126 + "]" * 126 + "}}",
        "json_too_deep", "-", "depth 128 inside __metadata__, before its type is judged")
    bad("depth-unclosed-4096", '{"t":{"x":' + "[" * 4096, "json_too_deep", "t",
        "4096 unclosed arrays: depth is found before the missing ends")
    bad("depth-127-top-array", "[" * 127 + "]" * 127, "header_not_object", "-",
        "127 nested arrays: deep enough, but not an object")


def schema_cases():
    """Step 5: the shape of the JSON document."""
    rows = [
        ("array", "[]", "header_not_object", "-", "the header is an array"),
        ("number", " 5 ", "header_not_object", "-", "the header is a number"),
        ("string", '"{}"', "header_not_object", "-", "the header is a string"),
        ("null", "null", "header_not_object", "-", "the header is null"),
        ("array-of-object", "[" + obj(GOOD) + "]", "header_not_object", "-",
         "the header object wrapped in an array"),
        ("metadata-string", '{"__metadata__":"pt"}', "bad_metadata", "-",
         "__metadata__ is a string"),
        ("metadata-array", '{"__metadata__":[]}', "bad_metadata", "-", "__metadata__ is an array"),
        ("metadata-int-value", '{"__metadata__":{"k":1}}', "bad_metadata", "-",
         "a metadata value is a number"),
        ("metadata-null-value", '{"__metadata__":{"k":null}}', "bad_metadata", "-",
         "a metadata value is null"),
        ("metadata-object-value", '{"__metadata__":{"k":{}}}', "bad_metadata", "-",
         "a metadata value is an object"),
        ("dup-tensor-identical", obj(GOOD, GOOD), "duplicate_key", "t",
         "the same tensor twice, identical (the reference accepts it)"),
        ("dup-tensor-differs", obj(t("t", "U8", [0], 0, 0), t("t", "U8", [4], 0, 4)),
         "duplicate_key", "t", "the same name with two ranges (TOB-SFTN-7 differential)"),
        ("dup-tensor-escaped", obj(GOOD, t("\\u0074", "U8", [4], 0, 4)), "duplicate_key", "t",
         "the same name spelled t and \\u0074"),
        ("dup-field", '{"t":{"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]}}',
         "duplicate_key", "t", "dtype twice in one tensor"),
        ("dup-extra-field", '{"t":{' + GOOD_BODY + ',"x":1,"x":2}}', "duplicate_key", "t",
         "an ignored field twice"),
        ("dup-metadata", '{"__metadata__":{},"__metadata__":{}}', "duplicate_key", "-",
         "__metadata__ twice"),
        ("dup-metadata-key", '{"__metadata__":{"k":"a","k":"b"}}', "duplicate_key", "-",
         "a metadata key twice"),
        ("tensor-number", '{"t":5}', "tensor_not_object", "t", "a tensor entry is a number"),
        ("tensor-array", '{"t":[0,4]}', "tensor_not_object", "t", "a tensor entry is an array"),
        ("tensor-null", '{"t":null}', "tensor_not_object", "t", "a tensor entry is null"),
        ("missing-dtype", '{"t":{"shape":[4],"data_offsets":[0,4]}}', "missing_field", "t",
         "no dtype"),
        ("missing-shape", '{"t":{"dtype":"U8","data_offsets":[0,4]}}', "missing_field", "t",
         "no shape"),
        ("missing-offsets", '{"t":{"dtype":"U8","shape":[4]}}', "missing_field", "t",
         "no data_offsets"),
        ("missing-all", '{"t":{}}', "missing_field", "t", "an empty tensor object"),
        ("dtype-number", '{"t":{"dtype":8,"shape":[4],"data_offsets":[0,4]}}',
         "bad_field_type", "t", "dtype is a number"),
        ("dtype-null", '{"t":{"dtype":null,"shape":[4],"data_offsets":[0,4]}}',
         "bad_field_type", "t", "dtype is null"),
        ("shape-string", '{"t":{"dtype":"U8","shape":"4","data_offsets":[0,4]}}',
         "bad_field_type", "t", "shape is a string"),
        ("shape-object", '{"t":{"dtype":"U8","shape":{"0":4},"data_offsets":[0,4]}}',
         "bad_field_type", "t", "shape is an object"),
        ("offsets-object", '{"t":{"dtype":"U8","shape":[4],"data_offsets":{"0":0,"1":4}}}',
         "bad_field_type", "t", "data_offsets is an object"),
        ("dtype-lowercase", obj(t("t", "f32", [1], 0, 4)), "unknown_dtype", "t",
         "dtype f32 (names are case-sensitive)"),
        ("dtype-f8-e4m3fn", obj(t("t", "F8_E4M3FN", [4], 0, 4)), "unknown_dtype", "t",
         "dtype F8_E4M3FN (torch's name, not safetensors')"),
        ("dtype-empty", obj(t("t", "", [4], 0, 4)), "unknown_dtype", "t", "an empty dtype"),
        ("dtype-trailing-space", obj(t("t", "U8 ", [4], 0, 4)), "unknown_dtype", "t",
         "dtype with a trailing space"),
        ("dtype-nul-suffix", obj(t("t", "U8\\u0000", [4], 0, 4)), "unknown_dtype", "t",
         "dtype U8 followed by an escaped NUL"),
    ]
    for slug, header, code, tensor, what in rows:
        bad("schema-" + slug, header, code, tensor, what)


def integer_cases():
    """Step 5: plain non-negative integers up to 2^64-1; two data_offsets."""
    rows = [
        ("shape-negative", "[-1]", "[0,4]", "bad_integer", "shape [-1]"),
        ("shape-minus-zero", "[-0]", "[0,0]", "bad_integer", "shape [-0]"),
        ("shape-fraction", "[4.0]", "[0,4]", "bad_integer", "shape [4.0]"),
        ("shape-exponent", "[4e0]", "[0,4]", "bad_integer", "shape [4e0]"),
        ("shape-string", '["4"]', "[0,4]", "bad_integer", 'shape ["4"]'),
        ("shape-null", "[null]", "[0,4]", "bad_integer", "shape [null]"),
        ("shape-nested", "[[4]]", "[0,4]", "bad_integer", "shape [[4]]"),
        ("shape-2pow64", "[18446744073709551616]", "[0,4]", "bad_integer", "shape [2^64]"),
        ("shape-huge", "[" + "9" * 30 + "]", "[0,4]", "bad_integer", "a 30-digit dimension"),
        ("offset-fraction", "[4]", "[0,4.0]", "bad_integer", "data_offsets [0,4.0]"),
        ("offset-negative", "[4]", "[-4,0]", "bad_integer", "data_offsets [-4,0]"),
        ("offset-2pow64", "[4]", "[0,18446744073709551616]", "bad_integer",
         "data_offsets end 2^64"),
        ("offset-bool", "[4]", "[true,4]", "bad_integer", "data_offsets [true,4]"),
        ("offsets-empty", "[4]", "[]", "bad_data_offsets", "data_offsets []"),
        ("offsets-one", "[4]", "[4]", "bad_data_offsets", "data_offsets [4]"),
        ("offsets-three", "[4]", "[0,4,8]", "bad_data_offsets", "data_offsets [0,4,8]"),
    ]
    for slug, shape, offsets, code, what in rows:
        header = '{"t":{"dtype":"U8","shape":%s,"data_offsets":%s}}' % (shape, offsets)
        bad("int-" + slug, header, code, "t", what)


def offset_cases():
    """Step 6: sorted by (begin, end), tensors tile the buffer from 0."""
    a4 = t("a", "U8", [4], 0, 4)
    rows = [
        ("not-at-zero", obj(t("t", "U8", [4], 4, 8)), "t", 8, "the only tensor starts at 4"),
        ("gap", obj(a4, t("b", "U8", [4], 5, 9)), "b", 9, "a 1-byte gap between a and b"),
        ("overlap", obj(a4, t("b", "U8", [4], 2, 6)), "b", 6, "b overlaps a"),
        ("same-range", obj(a4, t("b", "U8", [4], 0, 4)), "b", 4, "a and b share one range"),
        ("end-before-begin", obj(t("t", "U8", [4], 4, 0)), "t", 4, "data_offsets [4,0]"),
        ("zero-size-reversed", obj(a4, t("b", "U8", [0], 6, 5)), "b", 4,
         "a zero-size tensor with end < begin"),
        ("past-data", obj(a4, t("b", "U8", [4], 1000, 1004)), "b", 8,
         "lying offsets: b points far past the data"),
        ("begin-2pow64-minus-1", obj(t("t", "U8", [0], MAX64, MAX64)), "t", 0,
         "a zero-size tensor at offset 2^64-1"),
        ("json-order-lies", obj(t("z", "U8", [4], 10, 14), t("a", "U8", [4], 0, 4)), "z", 14,
         "JSON order differs from offset order; the gap is after a"),
    ]
    for slug, header, tensor, size, what in rows:
        bad("offset-" + slug, header, "invalid_offset", tensor, what, b"\0" * size)


def size_cases():
    """Step 7: element and bit counts, sub-byte dtypes, byte sizes."""
    rows = [
        ("overflow-u8-max", t("t", "U8", [MAX64], 0, MAX64), "validation_overflow",
         "U8 [2^64-1]: the bit count overflows"),
        ("overflow-elements", t("t", "U8", [2**32, 2**32], 0, 0), "validation_overflow",
         "[2^32, 2^32]: the element count overflows"),
        ("overflow-then-zero", t("t", "U8", [MAX64, MAX64, 0], 0, 0), "validation_overflow",
         "[2^64-1, 2^64-1, 0]: overflows before the 0"),
        ("overflow-f64-bits", t("t", "F64", [2**58], 0, 0), "validation_overflow",
         "F64 [2^58]: 2^64 bits"),
        ("overflow-f4-bits", t("t", "F4", [2**62], 0, 0), "validation_overflow",
         "F4 [2^62]: 2^64 bits"),
        ("overflow-100-dims", t("t", "BF16", [2**32] * 100, 0, 0), "validation_overflow",
         "100 dimensions of 2^32"),
        ("misaligned-f4-odd", t("t", "F4", [3], 0, 2), "misaligned_slice", "F4 [3]: 12 bits"),
        ("misaligned-f4-scalar", t("t", "F4", [], 0, 1), "misaligned_slice",
         "F4 scalar: 4 bits"),
        ("misaligned-f6-3", t("t", "F6_E2M3", [3], 0, 3), "misaligned_slice",
         "F6_E2M3 [3]: 18 bits"),
        ("misaligned-f6-2x3", t("t", "F6_E3M2", [2, 3], 0, 5), "misaligned_slice",
         "F6_E3M2 [2,3]: 36 bits"),
        ("size-f32-short", t("t", "F32", [2], 0, 4), "tensor_invalid_info",
         "F32 [2] in 4 bytes"),
        ("size-f32-long", t("t", "F32", [2], 0, 12), "tensor_invalid_info",
         "F32 [2] in 12 bytes"),
        ("size-scalar-empty", t("t", "F32", [], 0, 0), "tensor_invalid_info",
         "an F32 scalar in 0 bytes"),
        ("size-zero-dim", t("t", "F32", [0], 0, 4), "tensor_invalid_info",
         "F32 [0] in 4 bytes"),
        ("size-c64", t("t", "C64", [1], 0, 4), "tensor_invalid_info", "C64 [1] in 4 bytes"),
        ("size-f4-bytes", t("t", "F4", [2, 3], 0, 6), "tensor_invalid_info",
         "F4 [2,3] in 6 bytes (sized as bytes, not nibbles)"),
        ("size-bf16-off-by-one", t("t", "BF16", [2, 2], 0, 7), "tensor_invalid_info",
         "BF16 [2,2] in 7 bytes"),
        ("size-nul-name", t("a\\u0000b", "U8", [5], 0, 4), "tensor_invalid_info",
         "an error naming a tensor whose name holds a NUL"),
    ]
    for slug, entry, code, what in rows:
        end = int(entry.rsplit("[", 1)[1].split(",")[1].rstrip("]}"))
        tensor = "a\\x00b" if "nul-name" in slug else "t"
        size = end if end < 2**20 else 0
        bad(slug, obj(entry), code, tensor, what, b"\0" * size)


def coverage_cases():
    """Step 8: 8 + N + last end must equal the file size."""
    good = obj(GOOD)
    bad("cover-trailing-byte", good, "incomplete_buffer", "-", "one byte after the data",
        DATA4 + b"\0")
    bad("cover-truncated", good, "incomplete_buffer", "-", "data one byte short", DATA4[:3])
    bad("cover-no-data", good, "incomplete_buffer", "-", "no data at all", b"")
    bad("cover-empty-plus-byte", "{}", "incomplete_buffer", "-", "{} followed by a byte", b"\0")
    bad("cover-zip-polyglot", good, "incomplete_buffer", "-",
        "a valid file with a ZIP archive appended", DATA4 + b"PK\x05\x06" + b"\0" * 18)
    bad("cover-huge-tensor", obj(t("t", "U8", [2**60], 0, 2**60)), "incomplete_buffer", "-",
        "a consistent 2^60-byte tensor in a tiny file", b"")
    size = 2**61 - 1
    entries = [t("t%d" % i, "U8", [size], i * size, (i + 1) * size) for i in range(8)]
    bad("cover-sum-overflows", obj(*entries), "incomplete_buffer", "-",
        "tensors end at 2^64-8: 8 + N + end overflows", b"")


def valid_cases():
    """Files the reference accepts (code `ok`)."""
    case("ok-empty", raw("{}      "), "ok", "-", "{} with no tensors, padded to 8")
    case("ok-empty-metadata", raw('{"__metadata__":{}}'), "ok", "-", "empty metadata only")
    header = '{"__metadata__":{"format":"pt"},' + t("b", "F16", [2], 8, 12) + "," + \
        t("w", "F16", [2, 2], 0, 8) + "}"
    header += " " * (-len(header) % 8)
    case("ok-reference-layout", raw(header, bytes(range(12))), "ok", "-",
         "metadata and two F16 tensors, padded header")
    names = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
             "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
             "C64", "F64", "I64", "U64"]
    bits = [8, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64]
    entries, offset = [], 0
    for name, b in zip(names, bits):
        entries.append(t("t_" + name, name, [2, 4], offset, offset + b))
        offset += b
    case("ok-every-dtype", raw(obj(*entries), b"\0" * offset), "ok", "-",
         "a [2,4] tensor of each of the 22 dtypes")
    zeros = obj(t("z1", "F32", [0], 0, 0), t("z2", "BF16", [3, 0, 5], 0, 0),
                t("x", "F32", [2], 0, 8), t("z3", "U8", [0], 8, 8), t("s", "BOOL", [], 8, 9),
                t("z4", "U8", [0, MAX64, MAX64], 9, 9))
    case("ok-zero-size-and-scalars", raw(zeros, b"\0" * 9), "ok", "-",
         "zero-size tensors sharing offsets, a scalar, [0, 2^64-1, 2^64-1]")
    names = obj(t("", "U8", [1], 0, 1), t("a\\u0000b", "U8", [1], 1, 2),
                t("w\u00ebight.\u65e5\u672c", "U8", [1], 2, 3),
                t("\\ud83d\\ude00", "U8", [1], 3, 4), t("__metadata__x", "U8", [1], 4, 5))
    case("ok-odd-names", raw(names, b"\0" * 5), "ok", "-",
         "empty, NUL, non-ASCII, escaped emoji and __metadata__x names")
    order = obj(t("c", "F32", [1], 6, 10), t("a", "U8", [2], 0, 2),
                '"__metadata__":null', t("b", "I16", [2], 2, 6))
    case("ok-key-order", raw(order, b"\0" * 10), "ok", "-",
         "JSON order differs from offset order; __metadata__ null and last-but-one")
    case("ok-leading-padding", raw(" \t\r\n" + obj(GOOD) + "\n\r\t ", DATA4), "ok", "-",
         "JSON whitespace before and after the object")
    deep = '{"t":{' + GOOD_BODY + ',"x":' + nest(125, "[", "]") + "}}"
    case("ok-depth-127", raw(deep, DATA4), "ok", "-", "exactly 127 nested containers")
    extra = '{"t":{"extra":{"a":[1,{"b":null}],"c":"\\u0000"},' + GOOD_BODY + ',"zz":-1.5e300}}'
    case("ok-extra-fields", raw(extra, DATA4), "ok", "-", "unknown fields of any JSON type")


def dims_cases():
    """Huge dims lists (a million dimensions is made at test time)."""
    dims = ",".join(["2"] + ["1"] * 9999)
    entry = '{"t":{"dtype":"U16","shape":[%s],"data_offsets":[0,%d]}}'
    case("dims-10000-ok", raw(entry % (dims, 4), DATA4), "ok", "-", "a 10,000-dimension shape")
    case("dims-10000-wrong-size", raw(entry % (dims, 2), DATA4[:2]), "tensor_invalid_info", "t",
         "a 10,000-dimension shape in the wrong number of bytes")
    dims = ",".join(["65536"] * 5000)
    case("dims-5000-overflow", raw(entry % (dims, 4), DATA4), "validation_overflow", "t",
         "5,000 dimensions of 2^16: the product overflows at the fourth")


def write(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        if old.endswith(".safetensors"):
            os.remove(os.path.join(out_dir, old))
    rows = ["# file\texpected code\texpected tensor (- for none; \\xHH escapes)\twhat it tests"]
    for i, (slug, data, code, tensor, what) in enumerate(CASES, start=1):
        name = "%03d-%s.safetensors" % (i, slug)
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        rows.append("\t".join([name, code, tensor, what]))
    with open(os.path.join(out_dir, "MANIFEST.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(rows) + "\n")


def main():
    for make in (prefix_cases, utf8_cases, syntax_cases, depth_cases, schema_cases,
                 integer_cases, offset_cases, size_cases, coverage_cases, valid_cases,
                 dims_cases):
        make()
    slugs = [c[0] for c in CASES]
    assert len(slugs) == len(set(slugs)), "duplicate slug"
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    write(out_dir)
    total = sum(len(c[1]) for c in CASES)
    bad_count = sum(1 for c in CASES if c[2] != "ok")
    print("wrote %d files (%d malformed, %d valid), %d bytes, to %s" %
          (len(CASES), bad_count, len(CASES) - bad_count, total, out_dir))


if __name__ == "__main__":
    main()
