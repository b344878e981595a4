"""ConvertElements against numpy, for every pair the loader converts:
{BF16, F16, F32, F8_E4M3, F8_E5M2} -> {BF16, F16, F32}. Every bit pattern
of the 8- and 16-bit sources; for F32, random values plus the edge cases
(zeros, infinities, NaNs, subnormals of every target, the largest finite
values and the overflow thresholds, exact ties of each rounding). Both the
F16C and the scalar F16 paths. Oracle: numpy's float16 conversions (round to
nearest even) and, for the types numpy lacks, value arithmetic in float64:
an F8 byte is decoded from its fields; an F32 -> BF16 result is the nearer
of the two BF16 neighbours (ties to the even one), not a bit trick.
NaN results are compared as NaN (payloads differ between valid choices).
"""
import os
import subprocess
import tempfile

import numpy as np
import pytest

TOOL = os.environ.get("SHARDLOAD_CONVERT_TOOL", "")
SOURCES = ["BF16", "F16", "F32", "F8_E4M3", "F8_E5M2"]
TARGETS = ["BF16", "F16", "F32"]
BITS = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32, "F8_E4M3": np.uint8,
        "F8_E5M2": np.uint8}

pytestmark = pytest.mark.skipif(not TOOL, reason="SHARDLOAD_CONVERT_TOOL not set")


def decode_f8(bits, exp_bits, mant_bits, bias, ieee_specials):
    """Values (float64) of F8 bytes from sign, exponent and mantissa fields."""
    b = bits.astype(np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp = (b >> mant_bits) & ((1 << exp_bits) - 1)
    mant = b & ((1 << mant_bits) - 1)
    normal = sign * np.ldexp(1.0 + mant / (1 << mant_bits), exp - bias)
    sub = sign * np.ldexp(mant / (1 << mant_bits), 1 - bias)
    v = np.where(exp == 0, sub, normal)
    top = (1 << exp_bits) - 1
    if ieee_specials:  # E5M2: exponent all ones is inf (mantissa 0) or NaN
        v = np.where((exp == top) & (mant == 0), sign * np.inf, v)
        v = np.where((exp == top) & (mant != 0), np.nan, v)
    else:  # E4M3 (fn): only S.1111.111 is NaN, no infinities
        v = np.where((exp == top) & (mant == (1 << mant_bits) - 1), np.nan, v)
    return v


def source_values(dtype, bits):
    """Exact float64 values of source elements."""
    if dtype == "BF16":
        return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype == "F16":
        return bits.view(np.float16).astype(np.float64)
    if dtype == "F32":
        return bits.view(np.float32).astype(np.float64)
    if dtype == "F8_E4M3":
        return decode_f8(bits, 4, 3, 7, False)
    return decode_f8(bits, 5, 2, 15, True)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def to_bf16(values):
    """Round float64 values (each exactly an F32) to BF16 bits: the nearer of
    the two neighbours, ties to even; beyond the largest finite BF16 plus
    half a step, infinity."""
    f32 = values.astype(np.float32)
    out = np.zeros(values.shape, np.uint16)
    mag = np.abs(values)
    sign = np.where(np.signbit(values), 0x8000, 0).astype(np.uint16)
    low = ((f32.view(np.uint32) & 0x7FFFFFFF) >> 16).astype(np.uint16)  # truncated magnitude
    high = low + 1
    low_v, high_v = bf16_value(low), bf16_value(high)
    max_finite = bf16_value(np.array([0x7F7F], np.uint16))[0]
    overflow_at = max_finite + 2.0 ** 119  # half a step above: ties go to even (infinity)
    d_low, d_high = mag - low_v, high_v - mag
    pick_high = (d_high < d_low) | ((d_high == d_low) & (low % 2 == 1))
    out = np.where(pick_high, high, low).astype(np.uint16)
    out = np.where(mag >= overflow_at, 0x7F80, out).astype(np.uint16)
    out = np.where(np.isinf(values), 0x7F80, out).astype(np.uint16)
    out = out | sign
    return out


def expected(to, values):
    """Target bits (as an unsigned array) for float64 values, NaN kept."""
    if to == "F32":
        return values.astype(np.float32).view(np.uint32)
    if to == "F16":
        return values.astype(np.float32).astype(np.float16).view(np.uint16)
    return to_bf16(values)


def is_nan_bits(to, bits):
    if to == "F32":
        return np.isnan(bits.view(np.float32))
    if to == "F16":
        return np.isnan(bits.view(np.float16))
    return ((bits & 0x7F80) == 0x7F80) & ((bits & 0x7F) != 0)


def f32_inputs():
    rng = np.random.default_rng(int(os.environ.get("SHARDLOAD_TEST_SEED", "1")))
    random_bits = rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)
    moderate = rng.normal(0, 3, 50_000).astype(np.float32).view(np.uint32)
    special = []
    for m in range(0, 1 << 16, 1):  # every BF16 value with each low half pattern of interest
        for low in (0x0000, 0x7FFF, 0x8000, 0x8001, 0xFFFF):
            special.append((m << 16) | low)
    # F16: every half value +- tie offsets, subnormal range, overflow threshold.
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    f = halves.astype(np.float32).view(np.uint32)
    for delta in (0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF):
        special.extend(list(((f + delta) & 0xFFFFFFFF).astype(np.uint32)))
    for v in (65504.0, 65519.0, 65519.99, 65520.0, 65536.0, 2.0 ** -24, 2.0 ** -25,
              3 * 2.0 ** -26, 2.0 ** -25 * 1.0000001, 2.0 ** -14, 2.0 ** -14 * 0.99999,
              np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45):
        for s in (1.0, -1.0):
            special.append(np.array([s * v], np.float32).view(np.uint32)[0])
    special += [0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x80000000, 0]
    return np.concatenate([random_bits, moderate, np.array(special, np.uint32)])


def inputs(dtype):
    if dtype == "F32":
        return f32_inputs()
    return np.arange(1 << (8 * np.dtype(BITS[dtype]).itemsize), dtype=np.uint64).astype(BITS[dtype])


def run_tool(src, to, bits, mode):
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "in"), os.path.join(d, "out")
        bits.tofile(a)
        r = subprocess.run([TOOL, src, to, a, b] + ([mode] if mode == "scalar" else []),
                           capture_output=True, text=True, check=True)
        return np.fromfile(b, BITS[to]), r.stdout.strip()


@pytest.mark.parametrize("mode", ["auto", "scalar"])
@pytest.mark.parametrize("to", TARGETS)
@pytest.mark.parametrize("src", SOURCES)
def test_pair_matches_numpy(src, to, mode):
    bits = inputs(src)
    got, path = run_tool(src, to, bits, mode)
    if mode == "scalar":
        assert path == "scalar"
    values = source_values(src, bits)
    want = expected(to, values)
    assert got.shape == want.shape
    nan = np.isnan(values)
    assert np.array_equal(is_nan_bits(to, got), nan), f"{src}->{to}: NaN-ness differs"
    if src == "F32":  # a NaN keeps its sign
        sign_bit = {"F32": 0x80000000, "F16": 0x8000, "BF16": 0x8000}[to]
        assert np.array_equal((got[nan] & sign_bit) != 0, np.signbit(bits.view(np.float32))[nan])
    bad = np.nonzero((got != want) & ~nan)[0]
    assert bad.size == 0, (
        f"{src}->{to}: {bad.size} differ, first input bits {int(bits[bad[0]]):#x}: "
        f"got {int(got[bad[0]]):#x}, want {int(want[bad[0]]):#x}")


def test_bf16_oracle_sanity():
    # The oracle itself on hand-worked cases: ties to even, overflow, subnormal.
    v = np.array([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 3.3895313892515355e38, 3.4e38,
                  2.0 ** -133, -0.0], np.float64)
    assert list(to_bf16(v)) == [0x3F80, 0x3F82, 0x7F7F, 0x7F80, 0x0001, 0x8000]
