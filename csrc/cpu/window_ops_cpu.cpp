// CPU kernels for the upbench window ops.
//
// Layout: the public tensors are NCHW and every kernel works on them in place, vectorised along the
// row. The forward passes (and the parts of the backward passes that have the same form) go one
// low-resolution row per task (row_pair.h); the adjoint of the assembly with respect to its
// low-resolution input, which the backward passes need, goes one block of channels per task over
// the output rows (window_adjoint.h). No pass makes a channels-last copy.
//
// Out-of-map taps follow the reference's zero padding under IEEE arithmetic: the missing neighbour is
// a zero that is multiplied in, so it adds nothing unless the other factor is NaN or Inf, and then it
// adds NaN (0 * Inf = NaN). Skipping those taps would turn a NaN input into a finite output.
//
// float16 / bfloat16: the kernels read the maps in their dtype and widen them to float as they copy
// them into their per-row buffers, compute and accumulate in float, and round each output once as they
// store it (row_pair.h). A widened copy of the inputs and a float output rounded afterwards cost more
// than the kernels themselves (the copies and their page faults, at C = 256 and 64 x 64, made bfloat16
// 1.6x slower than float32). T below is the compute dtype, S the dtype of the maps.
//
// Instruction sets: every per-task body is an always-inline template on the vector width, compiled
// for AVX-512, AVX2 + FMA and the baseline, and chosen at run time (simd.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../upbench_checks.h"
#include "dtypes.h"
#include "row_pair.h"
#include "simd.h"
#include "thread_scratch.h"
#include "window_adjoint.h"

namespace upbench {
namespace {

struct Geom {
  int64_t N, H, W, Ho, Wo, K, R, KK;
  Geom(int64_t n, int64_t h, int64_t w, int64_t k)
      : N(n), H(h), W(w), Ho(2 * h), Wo(2 * w), K(k), R(k / 2), KK(k * k) {}
};

// ---- forward passes: NCHW in and out, one low-resolution row per task (csrc/cpu/row_pair.h) ----

// local_similarity: out (N, KK, Ho, Wo) = <query (N, d, Ho, Wo), windows of key (N, d, H, W)>.
template <typename T>
int64_t similarity_scratch(const Geom& g, int64_t d) {
  const row_pair::Shape widest = row_pair::widest_shape<T>(g.H, g.W, g.K);
  return row_pair::Scratch<T>::size(widest, d) + row_pair::LineCache<T>::size(widest, d);
}
template <typename T, int B, typename S>
UPBENCH_INLINE void similarity_rows(int64_t begin, int64_t end, Arena<T> arena, const S* query, const S* key, S* out,
                                    Geom g, int64_t d) {
  const row_pair::Shape s(g.H, g.W, g.K, simd::lanes<T, B>());
  row_pair::Scratch<T> buf(s, d, arena);
  row_pair::LineCache<T> key_lines(s, d, arena);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    row_pair::children_dots<T, B>(query + n * d * g.Ho * g.Wo, key + n * d * g.H * g.W, key_lines, d, p, s, buf,
                                  buf.taps);
    row_pair::store_children_taps<T, B>(buf.taps, p, s, out + n * g.KK * g.Ho * g.Wo);
  }
}
UPBENCH_PER_ISA(similarity_rows)

// dynamic_assembly: out (N, C, Ho, Wo) = sum_k weights (N, KK, Ho, Wo) * windows of x (N, C, H, W).
template <typename T>
int64_t assembly_scratch(const Geom& g, int64_t C) {
  const row_pair::Shape widest = row_pair::widest_shape<T>(g.H, g.W, g.K);
  return row_pair::Scratch<T>::size(widest, 0) + row_pair::LineCache<T>::size(widest, C);
}
template <typename T, int B, typename S>
UPBENCH_INLINE void assembly_rows(int64_t begin, int64_t end, Arena<T> arena, const S* weights, const S* x, S* out,
                                  Geom g, int64_t C) {
  const row_pair::Shape s(g.H, g.W, g.K, simd::lanes<T, B>());
  row_pair::Scratch<T> buf(s, 0, arena);
  row_pair::LineCache<T> x_lines(s, C, arena);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    for (int64_t k = 0; k < g.KK; ++k) {
      for (int a = 0; a < 2; ++a) {
        T* even = buf.taps + ((2 * a) * g.KK + k) * s.Wp;
        row_pair::split_row<T, B>(weights + ((n * g.KK + k) * g.Ho + 2 * p + a) * g.Wo, s, even, even + g.KK * s.Wp);
      }
    }
    row_pair::assemble_rows<T, B>(buf.taps, x + n * C * g.H * g.W, x_lines, C, p, s, out + n * C * g.Ho * g.Wo);
  }
}
UPBENCH_PER_ISA(assembly_rows)

// sapa_fused: logits <query, windows of key>, softmax over each window, assembly of value's windows.
// Out-of-map taps: a logit <q, 0> (NaN when q holds NaN or Inf) and a weight times zero.
template <typename T>
int64_t sapa_forward_scratch(const Geom& g, int64_t d, int64_t C) {
  const row_pair::Shape widest = row_pair::widest_shape<T>(g.H, g.W, g.K);
  return row_pair::Scratch<T>::size(widest, d) + row_pair::LineCache<T>::size(widest, d) +
         row_pair::LineCache<T>::size(widest, C);
}
template <typename T, int B, typename S>
UPBENCH_INLINE void sapa_forward_rows(int64_t begin, int64_t end, Arena<T> arena, const S* query, const S* key,
                                      const S* value, S* out, Geom g, int64_t d, int64_t C) {
  const row_pair::Shape s(g.H, g.W, g.K, simd::lanes<T, B>());
  row_pair::Scratch<T> buf(s, d, arena);
  row_pair::LineCache<T> key_lines(s, d, arena), value_lines(s, C, arena);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    row_pair::children_dots<T, B>(query + n * d * g.Ho * g.Wo, key + n * d * g.H * g.W, key_lines, d, p, s, buf,
                                  buf.taps);
    row_pair::softmax_taps<T, B>(buf.taps, s);
    row_pair::assemble_rows<T, B>(buf.taps, value + n * C * g.H * g.W, value_lines, C, p, s,
                                  out + n * C * g.Ho * g.Wo);
  }
}
UPBENCH_PER_ISA(sapa_forward_rows)

// sapa_fused backward, one pass over grad_out: per low-resolution row, the softmax kernel P
// (recomputed, as the forward computes it), the gradient of its logits G = P * (dP - <P, dP>) with
// dP[k] = <grad_out, value window k>, d/dquery = the assembly of key's windows with G, and d/dvalue
// by the adjoint's push form (window_adjoint.h) from P and the row's children of grad_out, which dP
// has just split: grad_out is read once, and P never leaves the thread. G is written as split taps
// for the adjoint that gives d/dkey. A thread owns the d/dvalue rows of its tasks; the R parent rows
// past either end of its range, which add to them, it splits and computes P for again (not G).
template <typename T>
int64_t sapa_backward_scratch(const Geom& g, int64_t d, int64_t C) {
  const row_pair::Shape widest = row_pair::widest_shape<T>(g.H, g.W, g.K);
  return row_pair::Scratch<T>::size(widest, std::max(d, C)) + row_pair::LineCache<T>::size(widest, d) +
         row_pair::LineCache<T>::size(widest, C) + row_pair::Scratch<T>::taps_size(widest) +
         window_adjoint::split_row_size(widest) + g.K * C * widest.Wp;
}
template <typename T, int B, typename S>
UPBENCH_INLINE void sapa_backward_rows(int64_t begin, int64_t end, Arena<T> arena, const S* query, const S* key,
                                       const S* value, const S* grad, S* grad_query, S* grad_value, T* G_split,
                                       Geom g, row_pair::Shape split, int64_t d, int64_t C) {
  constexpr int L = simd::lanes<T, B>();
  using V = simd::Vec<T, B>;
  const row_pair::Shape s(g.H, g.W, g.K, L);
  row_pair::Scratch<T> buf(s, std::max(d, C), arena);
  row_pair::LineCache<T> key_lines(s, d, arena), value_lines(s, C, arena);
  T *P = buf.taps, *G = arena.take(row_pair::Scratch<T>::taps_size(s));
  const int64_t split_size = window_adjoint::split_row_size(split);
  T* P_split = arena.take(split_size);
  T* sums = arena.take(g.K * C * split.Wp);  // d/dvalue rows in progress (window_adjoint::push_parent)
  for (int64_t first = begin; first < end;) {  // the tasks' rows [p0, p1) of one image
    const int64_t n = first / g.H, p0 = first % g.H, p1 = std::min(g.H, p0 + end - first);
    const S* image_grad = grad + n * C * g.Ho * g.Wo;
    S* image_grad_value = grad_value + n * C * g.H * g.W;
    int64_t stored = p0;  // d/dvalue rows below this one are stored
    for (int64_t p = std::max<int64_t>(0, p0 - g.R); p < std::min(g.H, p1 + g.R); ++p) {
      row_pair::children_dots<T, B>(query + n * d * g.Ho * g.Wo, key + n * d * g.H * g.W, key_lines, d, p, s, buf,
                                    P);
      row_pair::softmax_taps<T, B>(P, s);
      if (p >= p0 && p < p1) {
        row_pair::children_dots<T, B>(image_grad, value + n * C * g.H * g.W, value_lines, C, p, s, buf, G);
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
        row_pair::assemble_rows<T, B>(G, key + n * d * g.H * g.W, key_lines, d, p, s,
                                      grad_query + n * d * g.Ho * g.Wo);
        window_adjoint::copy_taps_to_split(G, s.Wp, split, G_split + (n * g.H + p) * split_size);
      } else {
        row_pair::split_children<T, B>(image_grad, C, p, s, buf.children, buf.stride);
      }
      window_adjoint::copy_taps_to_split(P, s.Wp, split, P_split);
      window_adjoint::push_parent<T, B>(P_split, buf.children, buf.stride, C, p, std::max(p0, p - g.R),
                                        std::min(p1 - 1, p + g.R), split, sums);
      // Row y has every share once parent min(H - 1, y + R) has added its own.
      const int64_t done = p == g.H - 1 ? p1 : std::min(p1, p - g.R + 1);
      for (; stored < done; ++stored)
        window_adjoint::store_sums<T, B>(sums, C, stored, split, image_grad_value);
    }
    first += p1 - p0;
  }
}
UPBENCH_PER_ISA(sapa_backward_rows)

template <typename T, int B, typename S>
UPBENCH_INLINE void split_taps_rows(int64_t begin, int64_t end, const S* weights, T* split, Geom g,
                                    row_pair::Shape s) {
  const int64_t size = window_adjoint::split_row_size(s);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.H, p = task % g.H;
    window_adjoint::split_taps_row<T, B>(weights + n * g.KK * g.Ho * g.Wo, p, s, split + task * size);
  }
}
UPBENCH_PER_ISA(split_taps_rows)

// Task = (image, band of output rows, block of channels), in that order of nesting: consecutive
// tasks of a thread share one band, whose split taps then stay in L2.
template <typename T, int B, typename S>
UPBENCH_INLINE void adjoint_tasks(int64_t begin, int64_t end, Arena<T> arena, const T* split, const S* hi, S* out,
                                  Geom g, row_pair::Shape s, int64_t C, int64_t band_rows) {
  constexpr int64_t NC = window_adjoint::kChannelBlock;
  window_adjoint::Ring<T> ring(s, arena);
  const int64_t blocks = ceil_div(C, NC), bands = ceil_div(g.H, band_rows);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / (bands * blocks), band = task / blocks % bands, block = task % blocks;
    const int64_t c0 = block * NC, y0 = band * band_rows, y1 = std::min(g.H, y0 + band_rows);
    window_adjoint::scatter_block<T, B>(split + n * g.H * window_adjoint::split_row_size(s), hi + n * C * g.Ho * g.Wo,
                                        out + n * C * g.H * g.W, c0, std::min(NC, C - c0), y0, y1, s, ring);
  }
}
UPBENCH_PER_ISA(adjoint_tasks)

// The row kernels over every low-resolution row of the batch, computing in T on maps stored as S.
template <typename T, typename S>
void similarity_nchw(const S* query, const S* key, S* out, const Geom& g, int64_t d) {
  parallel_with_scratch<T>(g.N * g.H, grain_for(4 * g.W * g.KK * d), similarity_scratch<T>(g, d),
                           [&](int64_t begin, int64_t end, Arena<T> arena) {
                             similarity_rows_dispatch<T>(begin, end, arena, query, key, out, g, d);
                           });
}

template <typename T, typename S>
void assembly_nchw(const S* weights, const S* x, S* out, const Geom& g, int64_t C) {
  parallel_with_scratch<T>(g.N * g.H, grain_for(4 * g.W * g.KK * C), assembly_scratch<T>(g, C),
                           [&](int64_t begin, int64_t end, Arena<T> arena) {
                             assembly_rows_dispatch<T>(begin, end, arena, weights, x, out, g, C);
                           });
}

// Room for the split taps (window_adjoint.h) of every low-resolution row of the batch.
template <typename T>
at::Tensor empty_split_taps(const Geom& g, const at::TensorOptions& options) {
  return at::empty({g.N * g.H, window_adjoint::split_row_size(window_adjoint::split_shape<T>(g.H, g.W, g.K))}, options);
}

// The adjoint of the assembly with respect to x: out (N, C, H, W) from split taps and hi (N, C, Ho, Wo).
// Bands of 16 rows: the split taps of a band's 16 + 2R parent rows fit in L2, and each block of
// channels re-splits 2R parent rows of hi at the start of a band. Thinner bands only where there
// are too few tasks for the threads.
template <typename T, typename S>
void adjoint_nchw(const T* split, const S* hi, S* out, const Geom& g, int64_t C) {
  constexpr int64_t kBandRows = 16;
  const row_pair::Shape s = window_adjoint::split_shape<T>(g.H, g.W, g.K);
  const int64_t blocks = ceil_div(C, window_adjoint::kChannelBlock);
  const int64_t wanted = 4 * static_cast<int64_t>(at::get_num_threads());
  int64_t band_rows = std::min(g.H, kBandRows);
  while (band_rows > 1 && g.N * blocks * ceil_div(g.H, band_rows) < wanted) band_rows = ceil_div(band_rows, 2);
  const int64_t work_per_task = band_rows * 4 * g.W * g.KK * window_adjoint::kChannelBlock;
  parallel_with_scratch<T>(g.N * blocks * ceil_div(g.H, band_rows), grain_for(work_per_task),
                           window_adjoint::Ring<T>::size(s), [&](int64_t begin, int64_t end, Arena<T> arena) {
                             adjoint_tasks_dispatch<T>(begin, end, arena, split, hi, out, g, s, C, band_rows);
                           });
}

// The same adjoint with the weights as an NCHW map (N, KK, Ho, Wo): split first, then as above.
template <typename T, typename S>
void adjoint_nchw_weights(const S* weights, const S* hi, S* out, const Geom& g, int64_t C,
                          const at::TensorOptions& options) {
  const row_pair::Shape s = window_adjoint::split_shape<T>(g.H, g.W, g.K);
  const at::Tensor split = empty_split_taps<T>(g, options.dtype(c10::CppTypeToScalarType<T>::value));
  T* split_data = split.data_ptr<T>();
  at::parallel_for(0, g.N * g.H, grain_for(4 * g.KK * g.Wo), [&](int64_t begin, int64_t end) {
    split_taps_rows_dispatch<T>(begin, end, weights, split_data, g, s);
  });
  adjoint_nchw<T>(static_cast<const T*>(split_data), hi, out, g, C);
}

// ---- op entry points ------------------------------------------------------------------------
//
// Every map is used in its own dtype (contiguous), computed on in compute_type's (dtypes.h).

at::Tensor local_similarity_cpu(const at::Tensor& query_, const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::local_similarity";
  check_local_similarity(op, query_, key_, K);
  check_cpu_dtype(op, key_);
  const at::Tensor query = query_.contiguous();
  const at::Tensor key = key_.contiguous();
  const Geom g(key.size(0), key.size(2), key.size(3), K);
  const int64_t d = key.size(1);
  at::Tensor out = at::empty({g.N, g.KK, g.Ho, g.Wo}, key.options());
  UPBENCH_DISPATCH_CPU_DTYPES(key.scalar_type(), op, [&] {
    similarity_nchw<compute_t<scalar_t>>(query.data_ptr<scalar_t>(), key.data_ptr<scalar_t>(),
                                         out.data_ptr<scalar_t>(), g, d);
  });
  return out;
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
  // d/dquery = dynamic_assembly(grad, key); d/dkey = the assembly's adjoint of (grad, query).
  const at::Tensor grad = grad_.contiguous();
  const at::Tensor query = query_.contiguous();
  const at::Tensor key = key_.contiguous();
  at::Tensor grad_query = at::empty({g.N, d, g.Ho, g.Wo}, key.options());
  at::Tensor grad_key = at::empty({g.N, d, g.H, g.W}, key.options());
  UPBENCH_DISPATCH_CPU_DTYPES(key.scalar_type(), op, [&] {
    using T = compute_t<scalar_t>;
    assembly_nchw<T>(grad.data_ptr<scalar_t>(), key.data_ptr<scalar_t>(), grad_query.data_ptr<scalar_t>(), g, d);
    adjoint_nchw_weights<T>(grad.data_ptr<scalar_t>(), query.data_ptr<scalar_t>(), grad_key.data_ptr<scalar_t>(), g,
                            d, key.options());
  });
  return {grad_query, grad_key};
}

at::Tensor dynamic_assembly_cpu(const at::Tensor& weights_, const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::dynamic_assembly";
  check_dynamic_assembly(op, weights_, x_, K);
  check_cpu_dtype(op, x_);
  const at::Tensor weights = weights_.contiguous();
  const at::Tensor x = x_.contiguous();
  const Geom g(x.size(0), x.size(2), x.size(3), K);
  const int64_t C = x.size(1);
  at::Tensor out = at::empty({g.N, C, g.Ho, g.Wo}, x.options());
  UPBENCH_DISPATCH_CPU_DTYPES(x.scalar_type(), op, [&] {
    assembly_nchw<compute_t<scalar_t>>(weights.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                       g, C);
  });
  return out;
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
  // d/dweights = local_similarity(grad, x); d/dx = the assembly's adjoint of (weights, grad).
  const at::Tensor grad = grad_.contiguous();
  const at::Tensor weights = weights_.contiguous();
  const at::Tensor x = x_.contiguous();
  at::Tensor grad_weights = at::empty({g.N, g.KK, g.Ho, g.Wo}, x.options());
  at::Tensor grad_x = at::empty({g.N, C, g.H, g.W}, x.options());
  UPBENCH_DISPATCH_CPU_DTYPES(x.scalar_type(), op, [&] {
    using T = compute_t<scalar_t>;
    similarity_nchw<T>(grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), g, C);
    adjoint_nchw_weights<T>(weights.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), g,
                            C, x.options());
  });
  return {grad_weights, grad_x};
}

at::Tensor sapa_fused_cpu(const at::Tensor& query_, const at::Tensor& key_, const at::Tensor& value_,
                          int64_t K) {
  constexpr const char* op = "upbench::sapa_fused";
  check_sapa_fused(op, query_, key_, value_, K);
  check_cpu_dtype(op, key_);
  const at::Tensor query = query_.contiguous();
  const at::Tensor key = key_.contiguous();
  const at::Tensor value = value_.contiguous();
  const Geom g(key.size(0), key.size(2), key.size(3), K);
  const int64_t d = key.size(1), C = value.size(1);
  at::Tensor out = at::empty({g.N, C, g.Ho, g.Wo}, value.options());
  UPBENCH_DISPATCH_CPU_DTYPES(value.scalar_type(), op, [&] {
    using T = compute_t<scalar_t>;
    const scalar_t *q = query.data_ptr<scalar_t>(), *k = key.data_ptr<scalar_t>(), *v = value.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    parallel_with_scratch<T>(g.N * g.H, grain_for(4 * g.W * g.KK * (d + C)), sapa_forward_scratch<T>(g, d, C),
                             [&](int64_t begin, int64_t end, Arena<T> arena) {
                               sapa_forward_rows_dispatch<T>(begin, end, arena, q, k, v, o, g, d, C);
                             });
  });
  return out;
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
  const at::Tensor query = query_.contiguous();
  const at::Tensor key = key_.contiguous();
  const at::Tensor value = value_.contiguous();
  const at::Tensor grad = grad_.contiguous();
  // The kernel and its logit gradient are recomputed here, never saved by the forward.
  at::Tensor grad_query = at::empty({g.N, d, g.Ho, g.Wo}, query.options());
  at::Tensor grad_key = at::empty({g.N, d, g.H, g.W}, query.options());
  at::Tensor grad_value = at::empty({g.N, C, g.H, g.W}, query.options());
  UPBENCH_DISPATCH_CPU_DTYPES(query.scalar_type(), op, [&] {
    using T = compute_t<scalar_t>;
    const row_pair::Shape split = window_adjoint::split_shape<T>(g.H, g.W, g.K);
    const at::TensorOptions compute_options = query.options().dtype(c10::CppTypeToScalarType<T>::value);
    at::Tensor G = empty_split_taps<T>(g, compute_options);
    const scalar_t *q = query.data_ptr<scalar_t>(), *k = key.data_ptr<scalar_t>(), *v = value.data_ptr<scalar_t>(),
                   *go = grad.data_ptr<scalar_t>();
    T* Gs = G.data_ptr<T>();
    scalar_t *gq = grad_query.data_ptr<scalar_t>(), *gv = grad_value.data_ptr<scalar_t>();
    parallel_with_scratch<T>(g.N * g.H, grain_for(12 * g.W * g.KK * (d + C)), sapa_backward_scratch<T>(g, d, C),
                             [&](int64_t begin, int64_t end, Arena<T> arena) {
                               sapa_backward_rows_dispatch<T>(begin, end, arena, q, k, v, go, gq, gv, Gs, g, split, d,
                                                              C);
                             });
    adjoint_nchw<T>(static_cast<const T*>(Gs), q, grad_key.data_ptr<scalar_t>(), g, d);
  });
  return {grad_query, grad_key, grad_value};
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
