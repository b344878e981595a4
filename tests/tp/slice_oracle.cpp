// The independent slicer of the property tests (see slice_oracle.h).
#include "tp/slice_oracle.h"

#include <cstring>

namespace shardload::tp::test {
namespace {

// Checks of a col/row case in the splitter's documented order.
std::optional<ErrorCode> ColRowRefusal(const Case& c, std::uint64_t n, unsigned w,
                                       std::vector<std::uint64_t>& sizes) {
  if (!c.block_sizes.empty()) {
    std::uint64_t sum = 0;
    for (std::uint64_t s : c.block_sizes) sum += s;
    if (sum != n) return ErrorCode::kTpShapeMismatch;
    sizes = c.block_sizes;
  } else {
    if (n % c.block_k != 0) return ErrorCode::kTpIndivisible;
    sizes.assign(c.block_k, n / c.block_k);
  }
  for (std::size_t j = 0; j < sizes.size(); ++j) {
    if (sizes[j] % c.unit != 0) return ErrorCode::kTpIndivisible;
    std::uint64_t u = sizes[j] / c.unit;
    bool rwf = c.rwf.size() == 1 ? c.rwf[0] : c.rwf[j];
    if (rwf && u < w) {
      if (u > 0 && w % u != 0) return ErrorCode::kTpIndivisible;
    } else if (c.uneven == Uneven::kExact && u % w != 0) {
      return ErrorCode::kTpIndivisible;
    }
  }
  return std::nullopt;
}

void OracleColRow(const Case& c, unsigned w, Expected& e) {
  const auto ndim = static_cast<std::int64_t>(c.tensor.shape.size());
  if (ndim == 0) return;
  std::optional<std::size_t> d = OracleDim(c);
  if (!d) return;
  if (c.dim && (*c.dim >= ndim || *c.dim < -ndim)) {
    e.refused = ErrorCode::kTpShapeMismatch;
    return;
  }
  std::vector<std::uint64_t> sizes;
  if ((e.refused = ColRowRefusal(c, c.tensor.shape[*d], w, sizes))) return;
  e.d = static_cast<int>(*d);
  for (unsigned r = 0; r < w; ++r) {
    std::vector<std::int64_t> map;
    std::vector<std::uint64_t> lens;
    std::uint64_t offset = 0;
    for (std::size_t j = 0; j < sizes.size(); ++j) {
      std::uint64_t u = sizes[j] / c.unit;
      bool rwf = (c.rwf.size() == 1 ? c.rwf[0] : c.rwf[j]) && u < w;
      e.rwf_used = e.rwf_used || (rwf && u > 0);
      std::vector<std::uint64_t> units =
          rwf ? (u == 0 ? std::vector<std::uint64_t>{} : std::vector<std::uint64_t>{r * u / w})
              : Deal(c.uneven, u, w, r);
      for (std::uint64_t x : units) {
        for (std::uint64_t k = 0; k < c.unit; ++k) {
          map.push_back(static_cast<std::int64_t>(offset + x * c.unit + k));
        }
      }
      lens.push_back(units.size() * c.unit);
      offset += sizes[j];
    }
    e.map.push_back(std::move(map));
    e.block_len.push_back(std::move(lens));
  }
}

void OracleVocab(const Case& c, unsigned w, Expected& e) {
  if (c.tensor.shape.empty()) return;
  std::uint64_t n = c.tensor.shape[0];
  std::uint64_t p = (n + c.pad_to - 1) / c.pad_to * c.pad_to;
  if (c.uneven == Uneven::kExact && p % w != 0) {
    e.refused = ErrorCode::kTpIndivisible;
    return;
  }
  e.d = 0;
  for (unsigned r = 0; r < w; ++r) {
    std::vector<std::int64_t> map;
    for (std::uint64_t x : Deal(c.uneven, p, w, r)) {
      map.push_back(x < n ? static_cast<std::int64_t>(x) : -1);
    }
    e.map.push_back(std::move(map));
  }
}

// Whether every maximal run (consecutive locally and in the source) of
// rank MAP's local tensor starts and ends on whole bytes.
bool RunsOnWholeBytes(const TensorInfo& t, int d, const std::vector<std::int64_t>& map) {
  const unsigned bits = DTypeBits(t.dtype);
  Shape local = t.shape;
  local[static_cast<std::size_t>(d)] = map.size();
  std::uint64_t count = NumElements(local);
  if (count * bits % 8 != 0) return false;
  std::int64_t prev_src = -2;
  for (std::uint64_t i = 0; i <= count; ++i) {
    std::int64_t src = -1;
    if (i < count) {
      std::vector<std::uint64_t> idx = Unravel(i, local);
      std::int64_t m = map[idx[static_cast<std::size_t>(d)]];
      if (m >= 0) {
        idx[static_cast<std::size_t>(d)] = static_cast<std::uint64_t>(m);
        src = static_cast<std::int64_t>(Ravel(idx, t.shape));
      }
    }
    bool continues = src >= 0 && prev_src >= 0 && src == prev_src + 1;
    bool boundary = !continues && (src >= 0 || prev_src >= 0);
    auto whole = [&](std::int64_t x) { return static_cast<std::uint64_t>(x) * bits % 8 == 0; };
    bool here = i * bits % 8 == 0;
    if (boundary && prev_src >= 0 && (!whole(prev_src + 1) || !here)) return false;  // run end
    if (boundary && src >= 0 && (!whole(src) || !here)) return false;              // run start
    prev_src = src;
  }
  return true;
}

}  // namespace

std::vector<std::uint64_t> Deal(Uneven rule, std::uint64_t u, unsigned w, unsigned r) {
  std::vector<std::uint64_t> out;
  if (rule == Uneven::kBalanced) {  // numpy.array_split
    std::uint64_t start = 0;
    for (unsigned k = 0; k < r; ++k) start += u / w + (k < u % w ? 1 : 0);
    std::uint64_t size = u / w + (r < u % w ? 1 : 0);
    for (std::uint64_t i = start; i < start + size; ++i) out.push_back(i);
    return out;
  }
  // torch.chunk: chunk i / c holds unit i; exact is chunk with c = u / W.
  std::uint64_t c = rule == Uneven::kExact ? u / w : (u + w - 1) / w;
  for (std::uint64_t i = 0; c > 0 && i < u; ++i) {
    if (i / c == r) out.push_back(i);
  }
  return out;
}

std::optional<std::size_t> OracleDim(const Case& c) {
  const auto ndim = static_cast<std::int64_t>(c.tensor.shape.size());
  if (c.dim) {
    std::int64_t d = *c.dim < 0 ? *c.dim + ndim : *c.dim;
    return static_cast<std::size_t>(d);  // range checked by the caller
  }
  if (ndim == 1) return c.style == Style::kCol ? std::optional<std::size_t>(0) : std::nullopt;
  return static_cast<std::size_t>(ndim - (c.style == Style::kCol ? 2 : 1));
}

std::vector<std::uint64_t> Unravel(std::uint64_t flat, const Shape& shape) {
  std::vector<std::uint64_t> idx(shape.size());
  for (std::size_t i = shape.size(); i-- > 0;) {
    idx[i] = flat % shape[i];
    flat /= shape[i];
  }
  return idx;
}

std::uint64_t Ravel(const std::vector<std::uint64_t>& idx, const Shape& shape) {
  std::uint64_t flat = 0;
  for (std::size_t i = 0; i < shape.size(); ++i) flat = flat * shape[i] + idx[i];
  return flat;
}

std::uint64_t NumElements(const Shape& shape) {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) n *= d;
  return n;
}

// The BITS-bit element at INDEX of BUF.
std::uint64_t Element(const Bytes& buf, std::uint64_t index, unsigned bits) {
  if (bits % 8 == 0) {
    std::uint64_t v = 0;
    std::memcpy(&v, buf.data() + index * bits / 8, bits / 8);
    return v;
  }
  std::uint64_t v = 0;
  for (unsigned k = 0; k < bits; ++k) {
    std::uint64_t bit = index * bits + k;
    v |= static_cast<std::uint64_t>((buf[bit / 8] >> (bit % 8)) & 1) << k;
  }
  return v;
}

Expected Oracle(const Case& c, unsigned w) {
  Expected e;
  if (c.style == Style::kCol || c.style == Style::kRow) OracleColRow(c, w, e);
  if (c.style == Style::kVocab) OracleVocab(c, w, e);
  if (e.refused || e.d < 0 || DTypeBits(c.tensor.dtype) % 8 == 0) return e;
  for (unsigned r = 0; r < w; ++r) {
    if (!RunsOnWholeBytes(c.tensor, e.d, e.map[r])) e.refused = ErrorCode::kTpMisaligned;
  }
  return e;
}

}  // namespace shardload::tp::test
