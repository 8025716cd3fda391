// CPU kernels for the upbench window ops.
//
// Layout: the public tensors are NCHW. The forward passes (and the parts of the backward passes that
// have the same form) work on NCHW in place, one low-resolution row per task, vectorised along the
// row (row_pair.h): for a fixed channel, a window tap's values for consecutive pixels are consecutive.
// The scatters of the backward passes (window_scatter) run over channels and read NHWC copies of their
// two operands.
//
// Out-of-map taps follow the reference's zero padding under IEEE arithmetic: the missing neighbour is
// a zero that is multiplied in, so it adds nothing unless the other factor is NaN or Inf, and then it
// adds NaN (0 * Inf = NaN). Skipping those taps would turn a NaN input into a finite output.
//
// float16 / bfloat16 inputs are widened to float32 in one copy, computed and accumulated in float32,
// and the results rounded once to the input dtype.
//
// Instruction sets: every per-task body is an always-inline template on the vector width, compiled
// for AVX-512, AVX2 + FMA and the baseline, and chosen at run time (simd.h).
//
// The scatter that appears in the backward passes (every output pixel adds into K*K input pixels) is
// written as a gather over the children whose windows contain an input pixel, so threads never write
// to the same location and no atomics are needed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../upbench_checks.h"
#include "dtypes.h"
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

// acc[0:n] = sum_e w[e] * src[e][0:n] (overwrites acc). The sum over e runs innermost so the
// accumulators stay in registers for a block of channels.
template <typename T, int B>
UPBENCH_INLINE void gather1(const T* const* src, const T* w, int64_t count, int64_t n, T* __restrict__ acc) {
  constexpr int V = simd::lanes<T, B>();
  int64_t c = 0;
  for (; c + 4 * V <= n; c += 4 * V) {
    simd::Vec<T, B> x0 = {}, x1 = {}, x2 = {}, x3 = {};
    for (int64_t e = 0; e < count; ++e) {
      const T* s = src[e] + c;
      const T we = w[e];
      x0 += we * simd::load<T, B>(s);
      x1 += we * simd::load<T, B>(s + V);
      x2 += we * simd::load<T, B>(s + 2 * V);
      x3 += we * simd::load<T, B>(s + 3 * V);
    }
    simd::store<T, B>(acc + c, x0);
    simd::store<T, B>(acc + c + V, x1);
    simd::store<T, B>(acc + c + 2 * V, x2);
    simd::store<T, B>(acc + c + 3 * V, x3);
  }
  for (; c + V <= n; c += V) {  // few channels (d = 32 under AVX-512) still go a vector at a time
    simd::Vec<T, B> x0 = {};
    for (int64_t e = 0; e < count; ++e) x0 += w[e] * simd::load<T, B>(src[e] + c);
    simd::store<T, B>(acc + c, x0);
  }
  for (; c < n; ++c) {
    T r = 0;
    for (int64_t e = 0; e < count; ++e) r += w[e] * src[e][c];
    acc[c] = r;
  }
}

// Adjoint of dynamic_assembly with respect to x: outT (N, H, W, C) NHWC receives, for each pixel,
// sum over the children (i, j) whose window holds it of w[k, i, j] * gT[i, j]. gT is (N, Ho, Wo, C).
template <typename T, int B>
UPBENCH_INLINE void window_scatter_rows(int64_t begin, int64_t end, const T* w, const T* gT, T* outT, Geom g,
                                        int64_t C) {
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
      gather1<T, B>(src.data(), wts.data(), count, C, outT + ((n * g.H + h) * g.W + x) * C);
    }
  }
}

UPBENCH_PER_ISA(window_scatter_rows)

template <typename T>
void window_scatter(const T* w, const T* gT, T* outT, const Geom& g, int64_t C) {
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * C), [&](int64_t begin, int64_t end) {
    window_scatter_rows_dispatch<T>(begin, end, w, gT, outT, g, C);
  });
}

// ---- forward passes: NCHW in and out, one low-resolution row per task (csrc/cpu/row_pair.h) ----

// local_similarity: out (N, KK, Ho, Wo) = <query (N, d, Ho, Wo), windows of key (N, d, H, W)>.
template <typename T, int B>
UPBENCH_INLINE void similarity_rows(int64_t begin, int64_t end, const T* query, const T* key, T* out, Geom g,
                                    int64_t d) {
  const row_pair::Shape s(g.H, g.W, g.K, simd::lanes<T, B>());
  row_pair::Scratch<T> buf(s, d, d);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    row_pair::children_dots<T, B>(query + n * d * g.Ho * g.Wo, key + n * d * g.H * g.W, d, p, s, buf, buf.taps.data());
    row_pair::store_children_taps<T, B>(buf.taps.data(), p, s, out + n * g.KK * g.Ho * g.Wo);
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
    row_pair::assemble_rows<T, B>(buf.taps.data(), x + n * C * g.H * g.W, C, p, s, buf, out + n * C * g.Ho * g.Wo);
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
    row_pair::children_dots<T, B>(query + n * d * g.Ho * g.Wo, key + n * d * g.H * g.W, d, p, s, buf, buf.taps.data());
    row_pair::softmax_taps<T, B>(buf.taps.data(), s);
    row_pair::assemble_rows<T, B>(buf.taps.data(), value + n * C * g.H * g.W, C, p, s, buf, out + n * C * g.Ho * g.Wo);
  }
}
UPBENCH_PER_ISA(sapa_forward_rows)

// sapa_fused backward, first pass: per low-resolution row, the softmax kernel P (recomputed, as the
// forward computes it) and the gradient of its logits, G = P * (dP - <P, dP>) with
// dP[k] = <grad_out, value window k>; both written as (N, KK, Ho, Wo), so the remaining gradients are
// an assembly (d/dquery) and two scatters (d/dkey, d/dvalue).
template <typename T, int B>
UPBENCH_INLINE void sapa_kernel_grad_rows(int64_t begin, int64_t end, const T* query, const T* key, const T* value,
                                          const T* grad, T* P_out, T* G_out, Geom g, int64_t d, int64_t C) {
  constexpr int L = simd::lanes<T, B>();
  using V = simd::Vec<T, B>;
  const row_pair::Shape s(g.H, g.W, g.K, L);
  row_pair::Scratch<T> buf(s, std::max(d, C), std::max(d, C));
  std::vector<T> grad_taps(buf.taps.size());
  T *P = buf.taps.data(), *G = grad_taps.data();
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    row_pair::children_dots<T, B>(query + n * d * g.Ho * g.Wo, key + n * d * g.H * g.W, d, p, s, buf, P);
    row_pair::softmax_taps<T, B>(P, s);
    row_pair::children_dots<T, B>(grad + n * C * g.Ho * g.Wo, value + n * C * g.H * g.W, C, p, s, buf, G);
    for (int t = 0; t < 4; ++t) {
      const int64_t child = t * g.KK * s.Wp;
      for (int64_t qb = 0; qb < s.Wp; qb += L) {
        V expected = {};
        for (int64_t k = 0; k < g.KK; ++k)
          expected += simd::load<T, B>(P + child + k * s.Wp + qb) * simd::load<T, B>(G + child + k * s.Wp + qb);
        for (int64_t k = 0; k < g.KK; ++k) {
          T* gk = G + child + k * s.Wp + qb;
          simd::store<T, B>(gk, simd::load<T, B>(P + child + k * s.Wp + qb) * (simd::load<T, B>(gk) - expected));
        }
      }
    }
    row_pair::store_children_taps<T, B>(P, p, s, P_out + n * g.KK * g.Ho * g.Wo);
    row_pair::store_children_taps<T, B>(G, p, s, G_out + n * g.KK * g.Ho * g.Wo);
  }
}
UPBENCH_PER_ISA(sapa_kernel_grad_rows)

// The row kernels over every low-resolution row of the batch.
template <typename T>
void similarity_nchw(const T* query, const T* key, T* out, const Geom& g, int64_t d) {
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * d), [&](int64_t begin, int64_t end) {
    similarity_rows_dispatch<T>(begin, end, query, key, out, g, d);
  });
}

template <typename T>
void assembly_nchw(const T* weights, const T* x, T* out, const Geom& g, int64_t C) {
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.W * g.KK * C), [&](int64_t begin, int64_t end) {
    assembly_rows_dispatch<T>(begin, end, weights, x, out, g, C);
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
    similarity_nchw(query.data_ptr<scalar_t>(), key.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), g, d);
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
  // d/dquery = dynamic_assembly(grad, key); d/dkey = window_scatter(grad, query).
  const at::Tensor grad = contiguous_compute(grad_);
  const at::Tensor key = contiguous_compute(key_);
  const at::Tensor qT = to_nhwc(query_);
  at::Tensor grad_query = at::empty({g.N, d, g.Ho, g.Wo}, grad.options());
  at::Tensor grad_keyT = at::empty({g.N, g.H, g.W, d}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), op, [&] {
    assembly_nchw(grad.data_ptr<scalar_t>(), key.data_ptr<scalar_t>(), grad_query.data_ptr<scalar_t>(), g, d);
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
    assembly_nchw(weights.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), g, C);
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
  // d/dweights = local_similarity(grad, x); d/dx = window_scatter(weights, grad).
  const at::Tensor grad = contiguous_compute(grad_);
  const at::Tensor gT = to_nhwc(grad_);
  const at::Tensor weights = contiguous_compute(weights_);
  const at::Tensor x = contiguous_compute(x_);
  at::Tensor grad_weights = at::empty({g.N, g.KK, g.Ho, g.Wo}, grad.options());
  at::Tensor grad_xT = at::empty({g.N, g.H, g.W, C}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), op, [&] {
    similarity_nchw(grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), g, C);
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
  const at::Tensor query = contiguous_compute(query_);
  const at::Tensor key = contiguous_compute(key_);
  const at::Tensor value = contiguous_compute(value_);
  const at::Tensor grad = contiguous_compute(grad_);
  const at::Tensor qT = to_nhwc(query_);
  const at::Tensor gT = to_nhwc(grad_);
  // The kernel and its logit gradient are recomputed here, never saved by the forward.
  at::Tensor P = at::empty({g.N, g.KK, g.Ho, g.Wo}, query.options());
  at::Tensor G = at::empty(P.sizes(), P.options());
  at::Tensor grad_query = at::empty({g.N, d, g.Ho, g.Wo}, query.options());
  at::Tensor grad_keyT = at::empty({g.N, g.H, g.W, d}, query.options());
  at::Tensor grad_valueT = at::empty({g.N, g.H, g.W, C}, query.options());
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), op, [&] {
    const scalar_t *q = query.data_ptr<scalar_t>(), *k = key.data_ptr<scalar_t>(), *v = value.data_ptr<scalar_t>(),
                   *go = grad.data_ptr<scalar_t>();
    scalar_t *Ps = P.data_ptr<scalar_t>(), *Gs = G.data_ptr<scalar_t>();
    at::parallel_for(0, g.N * g.H, grain_for(8 * g.W * g.KK * (d + C)), [&](int64_t begin, int64_t end) {
      sapa_kernel_grad_rows_dispatch<scalar_t>(begin, end, q, k, v, go, Ps, Gs, g, d, C);
    });
    assembly_nchw(Gs, k, grad_query.data_ptr<scalar_t>(), g, d);
    window_scatter(Gs, qT.data_ptr<scalar_t>(), grad_keyT.data_ptr<scalar_t>(), g, d);
    window_scatter(static_cast<const scalar_t*>(Ps), gT.data_ptr<scalar_t>(), grad_valueT.data_ptr<scalar_t>(), g, C);
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
