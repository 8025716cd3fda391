// CPU kernels for the upbench window ops.
//
// Layout: the public tensors are NCHW, where a pixel's channels are H*W apart. Every inner loop here
// runs over channels, so operands are read as NHWC: low-resolution ones (a quarter of the output size)
// are copied whole; so are high-resolution inputs of the backward passes, which two kernels read. The
// forward passes never hold a second high-resolution copy: the query is transposed two rows at a time
// and the output is accumulated per row pair in a per-task buffer, then written back as NCHW.
// Work is split over (n, low-resolution row p): the four children (2p+a, 2q+b) of a low-resolution
// pixel (p, q) share one window, so each window pixel is loaded once for four outputs.
//
// Out-of-map taps follow the reference's zero padding under IEEE arithmetic: the missing neighbour is
// a zero that is multiplied in, so it adds nothing unless the other factor is NaN or Inf, and then it
// adds NaN (0 * Inf = NaN). Skipping those taps would turn a NaN input into a finite output.
//
// float16 / bfloat16 inputs are widened to float32 in the same pass as the layout copies, computed and
// accumulated in float32, and the results rounded once to the input dtype.
//
// The scatter that appears in the backward passes (every output pixel adds into K*K input pixels) is
// written as a gather over the children whose windows contain an input pixel, so threads never write
// to the same location and no atomics are needed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "../upbench_checks.h"
#include "row_pair.h"
#include "simd.h"

namespace upbench {
namespace {

// Tasks per parallel chunk so that a chunk does at least ~64K multiply-adds: small problems run
// inline instead of paying for a parallel region (costly when the cores are shared).
int64_t grain_for(int64_t work_per_task) {
  constexpr int64_t kMinWork = int64_t(1) << 16;
  return std::max<int64_t>(1, kMinWork / std::max<int64_t>(1, work_per_task));
}

struct Geom {
  int64_t N, H, W, Ho, Wo, K, R, KK;
  Geom(int64_t n, int64_t h, int64_t w, int64_t k)
      : N(n), H(h), W(w), Ho(2 * h), Wo(2 * w), K(k), R(k / 2), KK(k * k) {}
  // Whether the window of low-resolution pixel (p, q) reaches outside the map.
  bool border(int64_t p, int64_t q) const { return p < R || p + R >= H || q < R || q + R >= W; }
};

// dst[b] (cols x rows) = transpose of src[b] (rows x cols), in cache-sized tiles, in parallel.
// permute().contiguous() is several times slower for these shapes, and this runs on every call.
template <typename T>
void transpose_batched(const T* src, T* dst, int64_t B, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  at::parallel_for(0, B * row_tiles * col_tiles, grain_for(kTile * kTile), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / (row_tiles * col_tiles), rest = t % (row_tiles * col_tiles);
      const int64_t r0 = (rest / col_tiles) * kTile, c0 = (rest % col_tiles) * kTile;
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      const T* s = src + b * rows * cols;
      T* d = dst + b * rows * cols;
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) d[c * rows + r] = s[r * cols + c];
    }
  });
}

// float16 / bfloat16 are computed in float32; float32 and float64 in themselves.
at::ScalarType compute_type(const at::Tensor& t) {
  const at::ScalarType st = t.scalar_type();
  return (st == at::kHalf || st == at::kBFloat16) ? at::kFloat : st;
}

// t as a contiguous tensor of the compute dtype (one pass when it must be widened).
at::Tensor contiguous_compute(const at::Tensor& t) {
  if (compute_type(t) == t.scalar_type()) return t.contiguous();
  return at::empty(t.sizes(), t.options().dtype(compute_type(t))).copy_(t);
}

// (N, C, H, W) -> contiguous (N, H, W, C) of the compute dtype: the layout every kernel below reads
// channels from.
at::Tensor to_nhwc(const at::Tensor& t_) {
  at::Tensor nhwc = t_.permute({0, 2, 3, 1});
  if (compute_type(t_) != t_.scalar_type()) {  // widened anyway: copy_ transposes in the same pass
    return at::empty(nhwc.sizes(), t_.options().dtype(compute_type(t_))).copy_(nhwc);
  }
  if (nhwc.is_contiguous()) return nhwc;  // channels-last input: already the layout we want
  const at::Tensor t = t_.contiguous();
  at::Tensor out = at::empty({t.size(0), t.size(2), t.size(3), t.size(1)}, t.options());
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "upbench::to_nhwc", [&] {
    transpose_batched(t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), t.size(0), t.size(1),
                      t.size(2) * t.size(3));
  });
  return out;
}

// Contiguous (N, H, W, C) -> contiguous (N, C, H, W) of dtype `like`.
at::Tensor from_nhwc(const at::Tensor& t, const at::Tensor& like) {
  at::Tensor out = at::empty({t.size(0), t.size(3), t.size(1), t.size(2)}, t.options());
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "upbench::from_nhwc", [&] {
    transpose_batched(t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), t.size(0), t.size(1) * t.size(2),
                      t.size(3));
  });
  return out.to(like.scalar_type());
}

void check_cpu_dtype(const char* op, const at::Tensor& t) {
  const at::ScalarType st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              " (CPU): dtype ", st, " is not supported; the CPU kernels take float32, float64, float16 and "
              "bfloat16");
}

// <a, 0> in IEEE arithmetic: 0, or NaN when a holds a NaN or an Inf. What an out-of-map tap (a zero of
// the padding) contributes to a dot product with a.
template <typename T>
UPBENCH_INLINE T times_zero(const T* a, int64_t n) {
  T r = 0;
  for (int64_t c = 0; c < n; ++c) r += a[c] * T(0);
  return r;
}

// Explicit 32-byte vectors. GCC does not vectorise float reductions without -ffast-math and gives up
// on loops with many possibly aliasing accumulators, so the hot loops say what they mean. Other
// compilers get the scalar loops.
//
// Per-ISA code without per-ISA build flags: the per-task bodies below are compiled three times
// (target_clones: x86-64-v4 = AVX-512, x86-64-v3 = AVX2 + FMA, and the baseline, where each vector
// operation becomes two SSE2 ones) and the dynamic loader picks one for the CPU it runs on. The helpers
// they call are inline and compiled into each clone.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define UPBENCH_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define UPBENCH_ISA_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define UPBENCH_VEC 1
constexpr int64_t kVecBytes = 32;
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int64_t kV = kVecBytes / sizeof(T);
template <typename T>
UPBENCH_INLINE Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
UPBENCH_INLINE void vstore(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T>
UPBENCH_INLINE T hsum(Vec<T> v) {
  T s = 0;
  for (int64_t l = 0; l < kV<T>; ++l) s += v[l];
  return s;
}
#endif

// out[t] = <a_t, s> for the four children t of one window pixel s.
template <typename T>
UPBENCH_INLINE void dot4(const T* __restrict__ a0, const T* __restrict__ a1, const T* __restrict__ a2,
                 const T* __restrict__ a3, const T* __restrict__ s, int64_t n, T* out) {
  int64_t c = 0;
  T r0 = 0, r1 = 0, r2 = 0, r3 = 0;
#ifdef UPBENCH_VEC
  constexpr int64_t V = kV<T>;
  const Vec<T> zero = {};
  Vec<T> x0 = zero, y0 = zero, x1 = zero, y1 = zero, x2 = zero, y2 = zero, x3 = zero, y3 = zero;
  for (; c + 2 * V <= n; c += 2 * V) {
    const Vec<T> u = vload(s + c), v = vload(s + c + V);
    x0 += vload(a0 + c) * u;
    y0 += vload(a0 + c + V) * v;
    x1 += vload(a1 + c) * u;
    y1 += vload(a1 + c + V) * v;
    x2 += vload(a2 + c) * u;
    y2 += vload(a2 + c + V) * v;
    x3 += vload(a3 + c) * u;
    y3 += vload(a3 + c + V) * v;
  }
  r0 = hsum<T>(x0 + y0);
  r1 = hsum<T>(x1 + y1);
  r2 = hsum<T>(x2 + y2);
  r3 = hsum<T>(x3 + y3);
#endif
  for (; c < n; ++c) {
    const T v = s[c];
    r0 += a0[c] * v;
    r1 += a1[c] * v;
    r2 += a2[c] * v;
    r3 += a3[c] * v;
  }
  out[0] = r0;
  out[1] = r1;
  out[2] = r2;
  out[3] = r3;
}

// out[t] = <a_t, 0>: what an out-of-map tap gives the four children's dot products. Only pixels whose
// window crosses the border need it.
template <typename T>
UPBENCH_INLINE void zero_products4(const T* a0, const T* a1, const T* a2, const T* a3, int64_t n, bool border,
                           T* out) {
  out[0] = border ? times_zero(a0, n) : T(0);
  out[1] = border ? times_zero(a1, n) : T(0);
  out[2] = border ? times_zero(a2, n) : T(0);
  out[3] = border ? times_zero(a3, n) : T(0);
}

// For the four children a0, a0 + n, a2, a2 + n of low-resolution pixel (p, q) of image `img`:
// store(k, r) with r[t] = <a_t, bT at window tap k>, or <a_t, 0> where the tap is outside the map.
template <typename T, typename Store>
UPBENCH_INLINE void window_dots4(const T* a0, const T* a2, const T* bT, int64_t img, int64_t p, int64_t q,
                                 int64_t n, const Geom& g, Store store) {
  T r[4], pad[4];
  zero_products4(a0, a0 + n, a2, a2 + n, n, g.border(p, q), pad);
  for (int64_t ky = 0; ky < g.K; ++ky) {
    const int64_t y = p + ky - g.R;
    for (int64_t kx = 0; kx < g.K; ++kx) {
      const int64_t x = q + kx - g.R;
      if (y >= 0 && y < g.H && x >= 0 && x < g.W) {
        dot4(a0, a0 + n, a2, a2 + n, bT + ((img * g.H + y) * g.W + x) * n, n, r);
        store(ky * g.K + kx, r);
      } else {
        store(ky * g.K + kx, pad);
      }
    }
  }
}

// Adds pad (0 or NaN: the out-of-map taps' w * 0) to acc[0:n].
template <typename T>
UPBENCH_INLINE void add_padding(T* acc, int64_t n, T pad) {
  if (std::isnan(pad)) std::fill(acc, acc + n, pad);
}

// acc_t[0:n] = sum_e w[4e + t] * src[e][0:n] for the four children t (overwrites acc_t). The sum over
// the window runs innermost so the accumulators stay in registers for a block of channels.
template <typename T>
UPBENCH_INLINE void gather4(const T* const* src, const T* w, int64_t count, int64_t n, T* __restrict__ acc0,
                    T* __restrict__ acc1, T* __restrict__ acc2, T* __restrict__ acc3) {
  int64_t c = 0;
#ifdef UPBENCH_VEC
  constexpr int64_t V = kV<T>;
  for (; c + 2 * V <= n; c += 2 * V) {
    const Vec<T> zero = {};
    Vec<T> x0 = zero, y0 = zero, x1 = zero, y1 = zero, x2 = zero, y2 = zero, x3 = zero, y3 = zero;
    for (int64_t e = 0; e < count; ++e) {
      const T* s = src[e] + c;
      const Vec<T> u = vload(s), v = vload(s + V);
      const T* we = w + 4 * e;
      x0 += we[0] * u;
      y0 += we[0] * v;
      x1 += we[1] * u;
      y1 += we[1] * v;
      x2 += we[2] * u;
      y2 += we[2] * v;
      x3 += we[3] * u;
      y3 += we[3] * v;
    }
    vstore(acc0 + c, x0);
    vstore(acc0 + c + V, y0);
    vstore(acc1 + c, x1);
    vstore(acc1 + c + V, y1);
    vstore(acc2 + c, x2);
    vstore(acc2 + c + V, y2);
    vstore(acc3 + c, x3);
    vstore(acc3 + c + V, y3);
  }
#endif
  for (; c < n; ++c) {
    T r0 = 0, r1 = 0, r2 = 0, r3 = 0;
    for (int64_t e = 0; e < count; ++e) {
      const T v = src[e][c];
      const T* we = w + 4 * e;
      r0 += we[0] * v;
      r1 += we[1] * v;
      r2 += we[2] * v;
      r3 += we[3] * v;
    }
    acc0[c] = r0;
    acc1[c] = r1;
    acc2[c] = r2;
    acc3[c] = r3;
  }
}

// acc[0:n] = sum_e w[e] * src[e][0:n] (overwrites acc).
template <typename T>
UPBENCH_INLINE void gather1(const T* const* src, const T* w, int64_t count, int64_t n, T* __restrict__ acc) {
  int64_t c = 0;
#ifdef UPBENCH_VEC
  constexpr int64_t V = kV<T>;
  for (; c + 4 * V <= n; c += 4 * V) {
    const Vec<T> zero = {};
    Vec<T> x0 = zero, x1 = zero, x2 = zero, x3 = zero;
    for (int64_t e = 0; e < count; ++e) {
      const T* s = src[e] + c;
      const T we = w[e];
      x0 += we * vload(s);
      x1 += we * vload(s + V);
      x2 += we * vload(s + 2 * V);
      x3 += we * vload(s + 3 * V);
    }
    vstore(acc + c, x0);
    vstore(acc + c + V, x1);
    vstore(acc + c + 2 * V, x2);
    vstore(acc + c + 3 * V, x3);
  }
#endif
  for (; c < n; ++c) {
    T r = 0;
    for (int64_t e = 0; e < count; ++e) r += w[e] * src[e][c];
    acc[c] = r;
  }
}

// src (2, Wo, C) -> rows [row0, row0 + 2) of dst (C, Ho, Wo).
// Channel blocks keep the reads sequential and the writes in a few sequential streams.
template <typename T>
UPBENCH_INLINE void store_two_rows_nchw(const T* src, int64_t C, int64_t Ho, int64_t Wo, int64_t row0, T* dst) {
  constexpr int64_t kBlock = 8;  // 8 write streams: one per L1 way, whatever the plane stride
  for (int64_t r = 0; r < 2; ++r) {
    const T* s = src + r * Wo * C;
    for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
      const int64_t cb = std::min(kBlock, C - c0);
      T* d = dst + (c0 * Ho + row0 + r) * Wo;
      for (int64_t j = 0; j < Wo; ++j) {
        const T* sj = s + j * C + c0;
        for (int64_t cc = 0; cc < cb; ++cc) d[cc * Ho * Wo + j] = sj[cc];
      }
    }
  }
}

// out (N, KK, Ho, Wo) = <aT (N, Ho, Wo, Ca), windows of bT (N, H, W, Ca)>, both NHWC.
template <typename T>
UPBENCH_ISA_CLONES void window_dot_tasks(int64_t begin, int64_t end, const T* aT, const T* bT, T* out, const Geom& g, int64_t Ca) {
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    for (int64_t q = 0; q < g.W; ++q) {
      const T* a0 = aT + ((n * g.Ho + 2 * p) * g.Wo + 2 * q) * Ca;
      window_dots4(a0, a0 + g.Wo * Ca, bT, n, p, q, Ca, g, [&](int64_t k, const T* r) {
        T* o = out + ((n * g.KK + k) * g.Ho + 2 * p) * g.Wo + 2 * q;
        o[0] = r[0];
        o[1] = r[1];
        o[g.Wo] = r[2];
        o[g.Wo + 1] = r[3];
      });
    }
  }
}

template <typename T>
void window_dot(const T* aT, const T* bT, T* out, const Geom& g, int64_t Ca) {
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * Ca), [&](int64_t begin, int64_t end) {
    window_dot_tasks(begin, end, aT, bT, out, g, Ca);
  });
}

// out (N, C, Ho, Wo) NCHW = sum_k w (N, KK, Ho, Wo) * windows of xT (N, H, W, C) NHWC.
template <typename T>
UPBENCH_ISA_CLONES void window_gather_tasks(int64_t begin, int64_t end, const T* w, const T* xT, T* out, const Geom& g, int64_t C) {
  std::vector<T> rows(2 * g.Wo * C), wts(4 * g.KK);
  std::vector<const T*> src(g.KK);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    for (int64_t q = 0; q < g.W; ++q) {
      int64_t count = 0;
      T pad[4] = {0, 0, 0, 0};
      for (int64_t ky = 0; ky < g.K; ++ky) {
        const int64_t y = p + ky - g.R;
        for (int64_t kx = 0; kx < g.K; ++kx) {
          const int64_t x = q + kx - g.R;
          const T* wk = w + ((n * g.KK + ky * g.K + kx) * g.Ho + 2 * p) * g.Wo + 2 * q;
          if (y < 0 || y >= g.H || x < 0 || x >= g.W) {
            pad[0] += wk[0] * T(0);
            pad[1] += wk[1] * T(0);
            pad[2] += wk[g.Wo] * T(0);
            pad[3] += wk[g.Wo + 1] * T(0);
            continue;
          }
          src[count] = xT + ((n * g.H + y) * g.W + x) * C;
          T* we = wts.data() + 4 * count;
          we[0] = wk[0];
          we[1] = wk[1];
          we[2] = wk[g.Wo];
          we[3] = wk[g.Wo + 1];
          ++count;
        }
      }
      T* acc0 = rows.data() + 2 * q * C;
      T* acc2 = acc0 + g.Wo * C;
      gather4(src.data(), wts.data(), count, C, acc0, acc0 + C, acc2, acc2 + C);
      add_padding(acc0, C, pad[0]);
      add_padding(acc0 + C, C, pad[1]);
      add_padding(acc2, C, pad[2]);
      add_padding(acc2 + C, C, pad[3]);
    }
    store_two_rows_nchw(rows.data(), C, g.Ho, g.Wo, 2 * p, out + n * C * g.Ho * g.Wo);
  }
}

template <typename T>
void window_gather(const T* w, const T* xT, T* out, const Geom& g, int64_t C) {
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * C), [&](int64_t begin, int64_t end) {
    window_gather_tasks(begin, end, w, xT, out, g, C);
  });
}

// Adjoint of window_gather with respect to x: outT (N, H, W, C) NHWC receives, for each pixel,
// sum over the children (i, j) whose window holds it of w[k, i, j] * gT[i, j]. gT is (N, Ho, Wo, C).
template <typename T>
UPBENCH_ISA_CLONES void window_scatter_tasks(int64_t begin, int64_t end, const T* w, const T* gT, T* outT, const Geom& g, int64_t C) {
  std::vector<T> wts(4 * g.KK);
  std::vector<const T*> src(4 * g.KK);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, h = task % g.H;
    for (int64_t x = 0; x < g.W; ++x) {
      int64_t count = 0;
      for (int64_t ky = 0; ky < g.K; ++ky) {
        const int64_t p = h - ky + g.R;  // the parent whose window offset ky lands on row h
        if (p < 0 || p >= g.H) continue;
        for (int64_t kx = 0; kx < g.K; ++kx) {
          const int64_t q = x - kx + g.R;
          if (q < 0 || q >= g.W) continue;
          const T* wk = w + ((n * g.KK + ky * g.K + kx) * g.Ho + 2 * p) * g.Wo + 2 * q;
          const T* g0 = gT + ((n * g.Ho + 2 * p) * g.Wo + 2 * q) * C;
          const int64_t offs[4] = {0, 1, g.Wo, g.Wo + 1};
          for (int t = 0; t < 4; ++t) {
            wts[count] = wk[offs[t]];
            src[count] = g0 + offs[t] * C;
            ++count;
          }
        }
      }
      gather1(src.data(), wts.data(), count, C, outT + ((n * g.H + h) * g.W + x) * C);
    }
  }
}

template <typename T>
void window_scatter(const T* w, const T* gT, T* outT, const Geom& g, int64_t C) {
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * C), [&](int64_t begin, int64_t end) {
    window_scatter_tasks(begin, end, w, gT, outT, g, C);
  });
}

// For the four children of (p, q): logits of the window (<query, 0> outside the map, as the reference's
// zero padding gives), softmax over the window, written to P[t * KK + k].
template <typename T>
UPBENCH_INLINE void children_softmax(const T* q0, const T* q2, const T* kT, int64_t n, int64_t p, int64_t q,
                                    int64_t d, const Geom& g, T* P) {
  window_dots4(q0, q2, kT, n, p, q, d, g, [&](int64_t k, const T* r) {
    for (int t = 0; t < 4; ++t) P[t * g.KK + k] = r[t];
  });
  for (int t = 0; t < 4; ++t) {
    T* l = P + t * g.KK;
    const T m = *std::max_element(l, l + g.KK);
    T s = 0;
    for (int64_t k = 0; k < g.KK; ++k) {
      l[k] = std::exp(l[k] - m);
      s += l[k];
    }
    const T inv = T(1) / s;
    for (int64_t k = 0; k < g.KK; ++k) l[k] *= inv;
  }
}

// ---- forward passes: NCHW in and out, one low-resolution row per task (csrc/cpu/row_pair.h) ----

// local_similarity: out (N, KK, Ho, Wo) = <query (N, d, Ho, Wo), windows of key (N, d, H, W)>.
template <typename T, int B>
UPBENCH_INLINE void similarity_rows(int64_t begin, int64_t end, const T* query, const T* key, T* out, Geom g,
                                    int64_t d) {
  constexpr int L = simd::lanes<T, B>();
  const row_pair::Shape s(g.H, g.W, g.K, L);
  row_pair::Scratch<T> buf(s, d, d);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    row_pair::split_children<T, B>(query + n * d * g.Ho * g.Wo, d, p, s, buf.children.data());
    row_pair::window_dots<T, B>(buf.children.data(), key + n * d * g.H * g.W, d, p, s, buf.lines.data(),
                                buf.zero_line.data(), buf.line_ptrs.data(), buf.taps.data());
    for (int64_t k = 0; k < g.KK; ++k) {
      for (int a = 0; a < 2; ++a) {
        const T* even = buf.taps.data() + ((2 * a) * g.KK + k) * s.Wp;
        const T* odd = even + g.KK * s.Wp;
        T* row = out + ((n * g.KK + k) * g.Ho + 2 * p + a) * g.Wo;
        for (int64_t qb = 0; qb < s.Wp; qb += L)
          row_pair::store_zipped<T, B>(row + 2 * qb, simd::load<T, B>(even + qb), simd::load<T, B>(odd + qb),
                                       std::min<int64_t>(2 * L, g.Wo - 2 * qb));
      }
    }
  }
}
UPBENCH_PER_ISA(similarity_rows)

// dynamic_assembly: out (N, C, Ho, Wo) = sum_k weights (N, KK, Ho, Wo) * windows of x (N, C, H, W).
template <typename T, int B>
UPBENCH_INLINE void assembly_rows(int64_t begin, int64_t end, const T* weights, const T* x, T* out, Geom g,
                                  int64_t C) {
  const row_pair::Shape s(g.H, g.W, g.K, simd::lanes<T, B>());
  row_pair::Scratch<T> buf(s, 0, 0);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    for (int64_t k = 0; k < g.KK; ++k) {
      for (int a = 0; a < 2; ++a) {
        T* even = buf.taps.data() + ((2 * a) * g.KK + k) * s.Wp;
        row_pair::split_row<T, B>(weights + ((n * g.KK + k) * g.Ho + 2 * p + a) * g.Wo, s, even, even + g.KK * s.Wp);
      }
    }
    row_pair::assemble_rows<T, B>(buf.taps.data(), x + n * C * g.H * g.W, C, p, s, buf.lines.data(),
                                  buf.zero_line.data(), buf.line_ptrs.data(), out + n * C * g.Ho * g.Wo);
  }
}
UPBENCH_PER_ISA(assembly_rows)

// sapa_fused: logits <query, windows of key>, softmax over each window, assembly of value's windows.
// Out-of-map taps: a logit <q, 0> (NaN when q holds NaN or Inf) and a weight times zero.
template <typename T, int B>
UPBENCH_INLINE void sapa_forward_rows(int64_t begin, int64_t end, const T* query, const T* key, const T* value,
                                      T* out, Geom g, int64_t d, int64_t C) {
  const row_pair::Shape s(g.H, g.W, g.K, simd::lanes<T, B>());
  row_pair::Scratch<T> buf(s, d, d);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    row_pair::split_children<T, B>(query + n * d * g.Ho * g.Wo, d, p, s, buf.children.data());
    row_pair::window_dots<T, B>(buf.children.data(), key + n * d * g.H * g.W, d, p, s, buf.lines.data(),
                                buf.zero_line.data(), buf.line_ptrs.data(), buf.taps.data());
    row_pair::softmax_taps<T, B>(buf.taps.data(), s);
    row_pair::assemble_rows<T, B>(buf.taps.data(), value + n * C * g.H * g.W, C, p, s, buf.lines.data(),
                                  buf.zero_line.data(), buf.line_ptrs.data(), out + n * C * g.Ho * g.Wo);
  }
}
UPBENCH_PER_ISA(sapa_forward_rows)

// First backward pass: recompute each pixel's softmax kernel P and the gradient of its logits,
// G = P * (dL/dP - <P, dL/dP>), where dL/dP[k] = <grad_out, value window k>. Both are written as
// (N, KK, Ho, Wo) so the remaining gradients are window_gather / window_scatter calls.
template <typename T>
UPBENCH_ISA_CLONES void sapa_backward_kernel_tasks(int64_t begin, int64_t end, const T* qT, const T* kT, const T* vT, const T* gT, T* Pout, T* Gout, const Geom& g, int64_t d, int64_t C) {
  T P[4 * kMaxFusedK * kMaxFusedK];
  T GP[4 * kMaxFusedK * kMaxFusedK];
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    for (int64_t q = 0; q < g.W; ++q) {
      const T* q0 = qT + ((n * g.Ho + 2 * p) * g.Wo + 2 * q) * d;
      const T* q2 = q0 + g.Wo * d;
      children_softmax(q0, q2, kT, n, p, q, d, g, P);
      const T* g0 = gT + ((n * g.Ho + 2 * p) * g.Wo + 2 * q) * C;
      window_dots4(g0, g0 + g.Wo * C, vT, n, p, q, C, g, [&](int64_t k, const T* r) {
        for (int t = 0; t < 4; ++t) GP[t * g.KK + k] = r[t];
      });
      for (int t = 0; t < 4; ++t) {
        const T* pt = P + t * g.KK;
        T* gp = GP + t * g.KK;
        T s = 0;
        for (int64_t k = 0; k < g.KK; ++k) s += pt[k] * gp[k];
        for (int64_t k = 0; k < g.KK; ++k) gp[k] = pt[k] * (gp[k] - s);
      }
      for (int64_t k = 0; k < g.KK; ++k) {
        const int64_t base = ((n * g.KK + k) * g.Ho + 2 * p) * g.Wo + 2 * q;
        const int64_t offs[4] = {0, 1, g.Wo, g.Wo + 1};
        for (int t = 0; t < 4; ++t) {
          Pout[base + offs[t]] = P[t * g.KK + k];
          Gout[base + offs[t]] = GP[t * g.KK + k];
        }
      }
    }
  }
}

template <typename T>
void sapa_backward_kernel(const T* qT, const T* kT, const T* vT, const T* gT, T* Pout, T* Gout,
                          const Geom& g, int64_t d, int64_t C) {
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * (d + C)), [&](int64_t begin, int64_t end) {
    sapa_backward_kernel_tasks(begin, end, qT, kT, vT, gT, Pout, Gout, g, d, C);
  });
}

// ---- op entry points ------------------------------------------------------------------------

at::Tensor local_similarity_cpu(const at::Tensor& query_, const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::local_similarity";
  check_local_similarity(op, query_, key_, K);
  check_cpu_dtype(op, key_);
  const at::Tensor query = contiguous_compute(query_);
  const at::Tensor key = contiguous_compute(key_);
  const Geom g(key_.size(0), key_.size(2), key_.size(3), K);
  const int64_t d = key_.size(1);
  at::Tensor out = at::empty({g.N, g.KK, g.Ho, g.Wo}, query.options());
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), op, [&] {
    const scalar_t *q = query.data_ptr<scalar_t>(), *k = key.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * d), [&](int64_t begin, int64_t end) {
      similarity_rows_dispatch<scalar_t>(begin, end, q, k, o, g, d);
    });
  });
  return out.to(key_.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> local_similarity_backward_cpu(const at::Tensor& grad_,
                                                                 const at::Tensor& query_,
                                                                 const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::local_similarity_backward";
  check_local_similarity(op, query_, key_, K);
  check_cpu_dtype(op, key_);
  const Geom g(key_.size(0), key_.size(2), key_.size(3), K);
  const int64_t d = key_.size(1);
  check_grad(op, grad_, {g.N, g.KK, g.Ho, g.Wo}, key_);
  // d/dquery = window_gather(grad, key); d/dkey = window_scatter(grad, query).
  const at::Tensor grad = contiguous_compute(grad_);
  const at::Tensor kT = to_nhwc(key_);
  const at::Tensor qT = to_nhwc(query_);
  at::Tensor grad_query = at::empty({g.N, d, g.Ho, g.Wo}, grad.options());
  at::Tensor grad_keyT = at::empty({g.N, g.H, g.W, d}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), op, [&] {
    window_gather(grad.data_ptr<scalar_t>(), kT.data_ptr<scalar_t>(), grad_query.data_ptr<scalar_t>(), g, d);
    window_scatter(grad.data_ptr<scalar_t>(), qT.data_ptr<scalar_t>(), grad_keyT.data_ptr<scalar_t>(), g, d);
  });
  return {grad_query.to(key_.scalar_type()), from_nhwc(grad_keyT, key_)};
}

at::Tensor dynamic_assembly_cpu(const at::Tensor& weights_, const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::dynamic_assembly";
  check_dynamic_assembly(op, weights_, x_, K);
  check_cpu_dtype(op, x_);
  const at::Tensor weights = contiguous_compute(weights_);
  const at::Tensor x = contiguous_compute(x_);
  const Geom g(x_.size(0), x_.size(2), x_.size(3), K);
  const int64_t C = x_.size(1);
  at::Tensor out = at::empty({g.N, C, g.Ho, g.Wo}, weights.options());
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), op, [&] {
    const scalar_t *w = weights.data_ptr<scalar_t>(), *xs = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * C), [&](int64_t begin, int64_t end) {
      assembly_rows_dispatch<scalar_t>(begin, end, w, xs, o, g, C);
    });
  });
  return out.to(x_.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> dynamic_assembly_backward_cpu(const at::Tensor& grad_,
                                                                 const at::Tensor& weights_,
                                                                 const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::dynamic_assembly_backward";
  check_dynamic_assembly(op, weights_, x_, K);
  check_cpu_dtype(op, x_);
  const Geom g(x_.size(0), x_.size(2), x_.size(3), K);
  const int64_t C = x_.size(1);
  check_grad(op, grad_, {g.N, C, g.Ho, g.Wo}, x_);
  // d/dweights = window_dot(grad, x); d/dx = window_scatter(weights, grad).
  const at::Tensor gT = to_nhwc(grad_);
  const at::Tensor weights = contiguous_compute(weights_);
  const at::Tensor xT = to_nhwc(x_);
  at::Tensor grad_weights = at::empty({g.N, g.KK, g.Ho, g.Wo}, gT.options());
  at::Tensor grad_xT = at::empty({g.N, g.H, g.W, C}, gT.options());
  AT_DISPATCH_FLOATING_TYPES(gT.scalar_type(), op, [&] {
    window_dot(gT.data_ptr<scalar_t>(), xT.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), g, C);
    window_scatter(weights.data_ptr<scalar_t>(), gT.data_ptr<scalar_t>(), grad_xT.data_ptr<scalar_t>(), g, C);
  });
  return {grad_weights.to(x_.scalar_type()), from_nhwc(grad_xT, x_)};
}

at::Tensor sapa_fused_cpu(const at::Tensor& query_, const at::Tensor& key_, const at::Tensor& value_,
                          int64_t K) {
  constexpr const char* op = "upbench::sapa_fused";
  check_sapa_fused(op, query_, key_, value_, K);
  check_cpu_dtype(op, key_);
  const at::Tensor query = contiguous_compute(query_);
  const at::Tensor key = contiguous_compute(key_);
  const at::Tensor value = contiguous_compute(value_);
  const Geom g(key_.size(0), key_.size(2), key_.size(3), K);
  const int64_t d = key_.size(1), C = value_.size(1);
  at::Tensor out = at::empty({g.N, C, g.Ho, g.Wo}, value.options());
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), op, [&] {
    const scalar_t *q = query.data_ptr<scalar_t>(), *k = key.data_ptr<scalar_t>(), *v = value.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * (d + C)), [&](int64_t begin, int64_t end) {
      sapa_forward_rows_dispatch<scalar_t>(begin, end, q, k, v, o, g, d, C);
    });
  });
  return out.to(value_.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sapa_fused_backward_cpu(const at::Tensor& grad_,
                                                                       const at::Tensor& query_,
                                                                       const at::Tensor& key_,
                                                                       const at::Tensor& value_, int64_t K) {
  constexpr const char* op = "upbench::sapa_fused_backward";
  check_sapa_fused(op, query_, key_, value_, K);
  check_cpu_dtype(op, key_);
  const Geom g(key_.size(0), key_.size(2), key_.size(3), K);
  const int64_t d = key_.size(1), C = value_.size(1);
  check_grad(op, grad_, {g.N, C, g.Ho, g.Wo}, value_);
  const at::Tensor qT = to_nhwc(query_);
  const at::Tensor kT = to_nhwc(key_);
  const at::Tensor vT = to_nhwc(value_);
  const at::Tensor gT = to_nhwc(grad_);
  // The kernel and its logit gradient are recomputed here, never saved by the forward.
  at::Tensor P = at::empty({g.N, g.KK, g.Ho, g.Wo}, qT.options());
  at::Tensor G = at::empty(P.sizes(), P.options());
  at::Tensor grad_query = at::empty({g.N, d, g.Ho, g.Wo}, qT.options());
  at::Tensor grad_keyT = at::empty({g.N, g.H, g.W, d}, qT.options());
  at::Tensor grad_valueT = at::empty({g.N, g.H, g.W, C}, qT.options());
  AT_DISPATCH_FLOATING_TYPES(qT.scalar_type(), op, [&] {
    sapa_backward_kernel(qT.data_ptr<scalar_t>(), kT.data_ptr<scalar_t>(), vT.data_ptr<scalar_t>(),
                         gT.data_ptr<scalar_t>(), P.data_ptr<scalar_t>(), G.data_ptr<scalar_t>(), g, d, C);
    window_gather(G.data_ptr<scalar_t>(), kT.data_ptr<scalar_t>(), grad_query.data_ptr<scalar_t>(), g, d);
    window_scatter(G.data_ptr<scalar_t>(), qT.data_ptr<scalar_t>(), grad_keyT.data_ptr<scalar_t>(), g, d);
    window_scatter(P.data_ptr<scalar_t>(), gT.data_ptr<scalar_t>(), grad_valueT.data_ptr<scalar_t>(), g, C);
  });
  return {grad_query.to(key_.scalar_type()), from_nhwc(grad_keyT, key_), from_nhwc(grad_valueT, value_)};
}

}  // namespace

TORCH_LIBRARY_IMPL(upbench, CPU, m) {
  m.impl("local_similarity", &local_similarity_cpu);
  m.impl("local_similarity_backward", &local_similarity_backward_cpu);
  m.impl("dynamic_assembly", &dynamic_assembly_cpu);
  m.impl("dynamic_assembly_backward", &dynamic_assembly_backward_cpu);
  m.impl("sapa_fused", &sapa_fused_cpu);
  m.impl("sapa_fused_backward", &sapa_fused_backward_cpu);
}

}  // namespace upbench
