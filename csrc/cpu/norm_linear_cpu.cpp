// CPU kernels of upbench::norm_linear and its backward: LayerNorm over the channels of every pixel,
// then a Linear, on an NCHW map, without the channels-last copy nn.LayerNorm needs.
//
// The LayerNorm is folded into the projection (csrc/norm_linear.h). Both kernels take a tile of pixels
// of one image at a time and do every pass the op needs over it while it is in L2, so the map is read
// from memory once per call. The first pass copies the tile's slab of x (C rows P apart) to a packed
// copy in the thread's scratch: P is often a power of two, and rows that far apart fall in a handful of
// cache sets, so the strided slab itself would not stay in cache. The products with the weights are
// register blocks (block_product) that walk the channels down a few vectors of pixels of the copy.
//
// float16 / bfloat16 maps (S; T is the compute dtype, float) are widened by that first copy and the
// outputs rounded as they are stored (simd.h), so neither x nor y has a widened copy; the parameters,
// a few KB, are widened up front.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "../norm_linear.h"
#include "../upbench_checks.h"
#include "dtypes.h"
#include "simd.h"
#include "thread_scratch.h"

namespace upbench {
namespace {

// Register blocks of kBlockRows<B> rows by kBlockVectors<B> vectors: with AVX-512's 32 registers,
// 8 x 3 accumulators, 3 loads and a broadcast, so a block does 24 FMAs per 11 loads and the FMA units,
// not the loads, bound it; AVX2 and SSE have 16 registers, which 4 x 2 leaves room in.
template <int B>
constexpr int kBlockRows = B >= 64 ? 8 : 4;
template <int B>
constexpr int kBlockVectors = B >= 64 ? 3 : 2;
// A tile's packed copy of x, and in the backward the tile's A^T grad_out beside it, stay well within L2
// (2 MB per core on current server CPUs).
constexpr int64_t kSlabBytes = int64_t(256) << 10;
// Bounds the scratch that grows with the tile's width (the backward's width x d) where C is small.
constexpr int64_t kMaxTileWidth = 1024;

// Pixels of a whole number of register blocks for every instruction set: the packed rows' length is a
// multiple of it, so the products need no tail.
template <typename T>
constexpr int64_t kPixelUnit = kBlockVectors<64> * 64 / sizeof(T);

// Each image's P pixels cut into `tiles` tiles of `width` pixels (the last one narrower); a task is one
// tile of one image, task = image * tiles + tile.
struct Tiling {
  int64_t width, tiles;
};

template <typename T>
Tiling tiling_for(int64_t N, int64_t C, int64_t P) {
  constexpr int64_t unit = kPixelUnit<T>;
  if (P == 0) return {unit, 0};
  const int64_t widest =
      std::max(unit, std::min(kSlabBytes / (std::max<int64_t>(C, 1) * int64_t(sizeof(T))), kMaxTileWidth) / unit * unit);
  // No fewer tasks than threads where the map has the pixels for them.
  const int64_t tiles = std::max(ceil_div(P, widest), std::min(ceil_div(at::get_num_threads(), N), ceil_div(P, unit)));
  const int64_t width = ceil_div(ceil_div(P, tiles), unit) * unit;
  return {width, ceil_div(P, width)};
}

struct Tile {
  int64_t n, p0, width, stride;  // stride: the packed rows' length, width rounded up to kPixelUnit
  template <typename T>
  static Tile of(int64_t task, const Tiling& t, int64_t P) {
    const int64_t n = task / t.tiles, p0 = task % t.tiles * t.width, width = std::min(t.width, P - p0);
    return {n, p0, width, ceil_div(width, kPixelUnit<T>) * kPixelUnit<T>};
  }
};

// f.template operator()<Bytes>(q) along a row of `width` pixels: vectors of B bytes, then one-lane vectors
// for the tail.
template <typename T, int B, typename F>
UPBENCH_INLINE void for_vectors(int64_t width, const F& f) {
  constexpr int L = simd::lanes<T, B>();
  int64_t q = 0;
  for (; q + L <= width; q += L) f.template operator()<B>(q);
  for (; q < width; ++q) f.template operator()<int(sizeof(T))>(q);
}

// The lanes of v for the pixels before `left` (those of the tile, which ends `left` pixels after p).
template <typename T, int B, typename S>
UPBENCH_INLINE void store_within(S* p, simd::Vec<T, B> v, int64_t left) {
  if (left >= simd::lanes<T, B>())
    simd::store<T, B>(p, v);
  else if (left > 0)
    simd::store_first<T, B>(p, v, left);
}

// acc[r][v] = sum over k < K of rows[r][k * row_step] * b[k * b_step + v * L]: the outer products of
// broadcast scalars of R rows with V vectors, accumulated in registers.
template <typename T, int B, int R, int V>
UPBENCH_INLINE void block_product(const std::array<const T*, R>& rows, int64_t row_step, const T* b, int64_t b_step,
                                  int64_t K, simd::Vec<T, B> (&acc)[R][V]) {
  constexpr int L = simd::lanes<T, B>();
  for (auto& row : acc)
    for (auto& v : row) v = simd::Vec<T, B>{};
  for (int64_t k = 0; k < K; ++k) {
    simd::Vec<T, B> bk[V];
    for (int v = 0; v < V; ++v) bk[v] = simd::load<T, B>(b + k * b_step + v * L);
    for (int r = 0; r < R; ++r) {
      const T a = rows[r][k * row_step];
      for (int v = 0; v < V; ++v) acc[r][v] += bk[v] * a;
    }
  }
}

// The R rows from row `first` of a matrix of `count` rows `stride` apart. Past the last row they repeat
// it: a block at the edge computes duplicates, which its caller drops, instead of reading out of bounds.
template <typename T, int R>
UPBENCH_INLINE std::array<const T*, R> block_rows(const T* matrix, int64_t stride, int64_t first, int64_t count) {
  std::array<const T*, R> rows;
  for (int r = 0; r < R; ++r) rows[r] = matrix + std::min(first + r, count - 1) * stride;
  return rows;
}

// Copies the tile's slab of x (C rows P apart) to packed (C rows tile.stride apart) and gives each
// pixel's mean and rstd over the channels: the centred variance, from the copy. The packed columns past
// the tile's width hold what earlier tiles left there; the kernels compute them and drop them.
template <typename T, int B, typename S>
UPBENCH_INLINE void pack_slab(const S* slab, int64_t C, int64_t P, const Tile& tile, double eps, T* packed, T* mean,
                              T* rstd) {
  constexpr int L = simd::lanes<T, B>();
  const T inv_c = T(1) / T(C);
  std::fill(mean, mean + tile.stride, T(0));
  std::fill(rstd, rstd + tile.stride, T(0));
  for (int64_t c = 0; c < C; ++c) {
    const S* row = slab + c * P;
    T* copy = packed + c * tile.stride;
    // The copy's lines two rows ahead are fetched before they are stored to: a store that waits for its
    // line holds up the loads from memory behind it (the copy runs about a third faster).
    if (c + 2 < C)
      for (int64_t q = 0; q < tile.width; q += 64 / sizeof(T)) __builtin_prefetch(copy + 2 * tile.stride + q, 1);
    for_vectors<T, B>(tile.width, [&]<int BB>(int64_t q) __attribute__((always_inline)) {
      const simd::Vec<T, BB> v = simd::load<T, BB>(row + q);  // widened from S
      simd::store<T, BB>(copy + q, v);
      simd::store<T, BB>(mean + q, simd::load<T, BB>(mean + q) + v);
    });
  }
  for (int64_t q = 0; q < tile.stride; ++q) mean[q] *= inv_c;
  for (int64_t c = 0; c < C; ++c) {
    const T* copy = packed + c * tile.stride;
    for (int64_t q = 0; q < tile.stride; q += L) {
      const simd::Vec<T, B> centred = simd::load<T, B>(copy + q) - simd::load<T, B>(mean + q);
      simd::store<T, B>(rstd + q, simd::load<T, B>(rstd + q) + centred * centred);
    }
  }
  for (int64_t q = 0; q < tile.stride; ++q) rstd[q] = T(1) / std::sqrt(rstd[q] * inv_c + T(eps));
}

// y (N, d, P) = rstd * (A x - mean * s) + c0, tile by tile; scratch: the packed slab, mean and rstd.
int64_t forward_scratch(const Tiling& t, int64_t C) {
  return (C + 2) * t.width;
}
template <typename T, int B, typename S>
UPBENCH_INLINE void forward_tiles(int64_t begin, int64_t end, Arena<T> arena, const S* x, const T* A, const T* s,
                                  const T* c0, S* y, int64_t C, int64_t d, int64_t P, Tiling tiling, double eps) {
  constexpr int R = kBlockRows<B>, V = kBlockVectors<B>, L = simd::lanes<T, B>();
  static_assert(kPixelUnit<T> % (V * L) == 0);
  using Vec = simd::Vec<T, B>;
  T* packed = arena.take(C * tiling.width);
  T* mean = arena.take(tiling.width);
  T* rstd = arena.take(tiling.width);
  for (int64_t task = begin; task < end; ++task) {
    const Tile tile = Tile::of<T>(task, tiling, P);
    pack_slab<T, B>(x + tile.n * C * P + tile.p0, C, P, tile, eps, packed, mean, rstd);
    S* out = y + tile.n * d * P + tile.p0;
    for (int64_t q = 0; q < tile.stride; q += V * L) {
      Vec scale[V], shift[V];
      for (int v = 0; v < V; ++v) {
        scale[v] = simd::load<T, B>(rstd + q + v * L);
        shift[v] = simd::load<T, B>(mean + q + v * L) * scale[v];
      }
      for (int64_t j0 = 0; j0 < d; j0 += R) {
        Vec acc[R][V];
        block_product<T, B, R, V>(block_rows<T, R>(A, C, j0, d), 1, packed + q, tile.stride, C, acc);
        for (int r = 0; r < R && j0 + r < d; ++r) {
          const int64_t j = j0 + r;
          for (int v = 0; v < V; ++v)
            store_within<T, B>(out + j * P + q + v * L, acc[r][v] * scale[v] - shift[v] * s[j] + c0[j],
                               tile.width - q - v * L);
        }
      }
    }
  }
}
UPBENCH_PER_ISA(forward_tiles)

// The backward's sums over the pixels, one block of size() elements per thread: M^T less the mean's term,
// x (grad_out * rstd)^T (C rows of dp), then grad_out 1 and (grad_out * rstd) mean (dp each). dp is d
// rounded up to whole vectors of the widest instruction set; it is also the row length of the tile's
// pixel-major copy of grad_out * rstd.
struct BackwardSums {
  int64_t C, d, dp;
  BackwardSums(int64_t channels, int64_t outputs, int64_t element_bytes)
      : C(channels), d(outputs), dp(ceil_div(outputs, 64 / element_bytes) * (64 / element_bytes)) {}
  int64_t size() const { return (C + 2) * dp; }
  int64_t grad_bias() const { return C * dp; }
  int64_t mean_term() const { return (C + 1) * dp; }
};

// Copies the tile of grad_out (d rows P apart) to packed (rows tile.stride apart), and to scaled,
// pixel-major, times rstd (scaled[q * dp + j], the padding left zero) for the parameter product; adds
// the tile's part of grad_out 1 and (grad_out * rstd) mean to the thread's sums.
template <typename T, int B, typename S>
UPBENCH_INLINE void pack_grad_out(const S* grad_out, int64_t P, const Tile& tile, const T* mean, const T* rstd,
                                  const BackwardSums& layout, T* packed, T* scaled, T* sums) {
  for (int64_t j = 0; j < layout.d; ++j) {
    const S* row = grad_out + j * P;
    T* copy = packed + j * tile.stride;
    simd::Vec<T, B> bias_sum = {}, mean_sum = {};
    for_vectors<T, B>(tile.width, [&]<int BB>(int64_t q) __attribute__((always_inline)) {
      const simd::Vec<T, BB> g = simd::load<T, BB>(row + q), gs = g * simd::load<T, BB>(rstd + q);
      simd::store<T, BB>(copy + q, g);
      for (int l = 0; l < simd::lanes<T, BB>(); ++l) scaled[(q + l) * layout.dp + j] = gs[l];
      const simd::Vec<T, BB> gsm = gs * simd::load<T, BB>(mean + q);
      if constexpr (BB == B) {
        bias_sum += g;
        mean_sum += gsm;
      } else {
        bias_sum[0] += g[0];
        mean_sum[0] += gsm[0];
      }
    });
    for (int l = 0; l < simd::lanes<T, B>(); ++l) {
      sums[layout.grad_bias() + j] += bias_sum[l];
      sums[layout.mean_term() + j] += mean_sum[l];
    }
  }
}

// sums[c * dp + j] += sum over the tile's pixels q of x[c][q] scaled[q][j]: the GEMM of the parameter
// gradient, over the packed slab.
template <typename T, int B>
UPBENCH_INLINE void parameter_product(const T* packed, const Tile& tile, const T* scaled, const BackwardSums& layout,
                                      T* sums) {
  constexpr int R = kBlockRows<B>, L = simd::lanes<T, B>();
  const int64_t C = layout.C, dp = layout.dp;
  const auto accumulate = [&]<int V>(int64_t c0, int64_t j) __attribute__((always_inline)) {
    simd::Vec<T, B> acc[R][V];
    block_product<T, B, R, V>(block_rows<T, R>(packed, tile.stride, c0, C), 1, scaled + j, dp, tile.width, acc);
    for (int r = 0; r < R && c0 + r < C; ++r)
      for (int v = 0; v < V; ++v) {
        T* m = sums + (c0 + r) * dp + j + v * L;
        simd::store<T, B>(m, simd::load<T, B>(m) + acc[r][v]);
      }
  };
  for (int64_t c0 = 0; c0 < C; c0 += R) {
    int64_t j = 0;
    for (; j + 2 * L <= dp; j += 2 * L) accumulate.template operator()<2>(c0, j);
    for (; j < dp; j += L) accumulate.template operator()<1>(c0, j);
  }
}

// grad_x = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)) for the tile's pixels, with g = A^T grad_out
// from AT (C x d) and the packed grad_out. The products go down the channels a block of pixels at a
// time, into `g` (C rows tile.stride apart), and leave each pixel's two means in `coefficients`; grad_x
// is then written row by row, whole rows of the tile at a time, which the caches take far better than
// a few lines from each of C rows P apart.
template <typename T, int B, typename S>
UPBENCH_INLINE void input_grad(const T* packed, const T* packed_grad, const T* AT, int64_t C, int64_t d, int64_t P,
                               const Tile& tile, const T* mean, const T* rstd, T* g, T* coefficients, S* grad_x) {
  constexpr int R = kBlockRows<B>, V = kBlockVectors<B>, L = simd::lanes<T, B>();
  static_assert(kPixelUnit<T> % (V * L) == 0);
  using Vec = simd::Vec<T, B>;
  const T inv_c = T(1) / T(C);
  T* g_mean = coefficients;  // mean_c(g)
  T* g_dot = coefficients + tile.stride;  // mean_c(g * xhat) * rstd
  for (int64_t q = 0; q < tile.stride; q += V * L) {
    Vec m[V], sum[V] = {}, dot[V] = {};
    for (int v = 0; v < V; ++v) m[v] = simd::load<T, B>(mean + q + v * L);
    for (int64_t c0 = 0; c0 < C; c0 += R) {
      for (int r = 0; r < R && c0 + R + r < C; ++r)  // the next block's lines of g, as in pack_slab
        for (int v = 0; v < V; ++v) __builtin_prefetch(g + (c0 + R + r) * tile.stride + q + v * L, 1);
      Vec acc[R][V];
      block_product<T, B, R, V>(block_rows<T, R>(AT, d, c0, C), 1, packed_grad + q, tile.stride, d, acc);
      for (int r = 0; r < R && c0 + r < C; ++r) {
        const int64_t offset = (c0 + r) * tile.stride + q;
        for (int v = 0; v < V; ++v) {
          sum[v] += acc[r][v];
          dot[v] += acc[r][v] * (simd::load<T, B>(packed + offset + v * L) - m[v]);
          simd::store<T, B>(g + offset + v * L, acc[r][v]);
        }
      }
    }
    for (int v = 0; v < V; ++v) {
      const Vec scale = simd::load<T, B>(rstd + q + v * L);
      simd::store<T, B>(g_mean + q + v * L, sum[v] * inv_c);
      simd::store<T, B>(g_dot + q + v * L, dot[v] * inv_c * scale * scale);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    const int64_t row = c * tile.stride;
    for (int64_t q = 0; q < tile.stride; q += L) {
      const Vec centred = simd::load<T, B>(packed + row + q) - simd::load<T, B>(mean + q);
      const Vec value = simd::load<T, B>(rstd + q) * (simd::load<T, B>(g + row + q) - simd::load<T, B>(g_mean + q) -
                                                      centred * simd::load<T, B>(g_dot + q));
      // grad_x is as big as x and this op does not read it back: whole aligned vectors skip the caches
      // (the backward on SAPA-B's guide, 16 MB, took a sixth longer with plain stores).
      S* out = grad_x + c * P + q;
      if (std::is_same_v<S, T> && tile.width - q >= L && reinterpret_cast<uintptr_t>(out) % B == 0)
        simd::stream<T, B>(reinterpret_cast<T*>(out), value);
      else
        store_within<T, B>(out, value, tile.width - q);
    }
  }
}

// grad_x tile by tile, and per thread the sums of the parameter gradients (BackwardSums); scratch: the
// packed slab, its mean and rstd, the packed and the scaled grad_out, A^T grad_out and its two means.
int64_t backward_scratch(const Tiling& t, const BackwardSums& layout) {
  return t.width * (2 * layout.C + 4 + layout.d + layout.dp);
}
template <typename T, int B, typename S>
UPBENCH_INLINE void backward_tiles(int64_t begin, int64_t end, Arena<T> arena, const S* x, const S* grad_out,
                                   const T* AT, S* grad_x, T* thread_sums, BackwardSums layout, int64_t P,
                                   Tiling tiling, double eps) {
  const int64_t C = layout.C, d = layout.d;
  T* sums = thread_sums + at::get_thread_num() * layout.size();
  T* packed = arena.take(C * tiling.width);
  T* mean = arena.take(tiling.width);
  T* rstd = arena.take(tiling.width);
  T* packed_grad = arena.take(d * tiling.width);
  T* scaled = arena.take(tiling.width * layout.dp);
  T* g = arena.take(C * tiling.width);
  T* coefficients = arena.take(2 * tiling.width);
  for (int64_t task = begin; task < end; ++task) {
    const Tile tile = Tile::of<T>(task, tiling, P);
    pack_slab<T, B>(x + tile.n * C * P + tile.p0, C, P, tile, eps, packed, mean, rstd);
    pack_grad_out<T, B>(grad_out + tile.n * d * P + tile.p0, P, tile, mean, rstd, layout, packed_grad, scaled, sums);
    parameter_product<T, B>(packed, tile, scaled, layout, sums);
    input_grad<T, B>(packed, packed_grad, AT, C, d, P, tile, mean, rstd, g, coefficients, grad_x + tile.n * C * P + tile.p0);
  }
  simd::stream_fence();
}
UPBENCH_PER_ISA(backward_tiles)

at::Tensor norm_linear_cpu(const at::Tensor& x_, const at::Tensor& gamma, const at::Tensor& beta,
                           const at::Tensor& weight, const at::Tensor& bias, double eps) {
  constexpr const char* op = "upbench::norm_linear";
  check_norm_linear(op, x_, gamma, beta, weight, bias, eps);
  check_cpu_dtype(op, x_);
  const at::Tensor x = x_.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), P = H * W;
  const FoldedNormLinear folded = fold_norm_linear(contiguous_compute(gamma), contiguous_compute(beta),
                                                   contiguous_compute(weight), contiguous_compute(bias));
  const int64_t d = folded.A.size(0);
  at::Tensor y = at::empty({N, d, H, W}, x.options());
  if (C == 0) return y.copy_(folded.c0.view({1, d, 1, 1}));  // nothing to normalise: the bias
  if (d > 0) {
    UPBENCH_DISPATCH_CPU_DTYPES(x.scalar_type(), op, [&] {
      using T = compute_t<scalar_t>;
      const Tiling tiling = tiling_for<T>(N, C, P);
      const scalar_t* xs = x.data_ptr<scalar_t>();
      const T *A = folded.A.data_ptr<T>(), *s = folded.s.data_ptr<T>(), *c0 = folded.c0.data_ptr<T>();
      scalar_t* ys = y.data_ptr<scalar_t>();
      parallel_with_scratch<T>(N * tiling.tiles, 1, forward_scratch(tiling, C),
                               [&](int64_t begin, int64_t end, Arena<T> arena) {
                                 forward_tiles_dispatch<T>(begin, end, arena, xs, A, s, c0, ys, C, d, P, tiling, eps);
                               });
    });
  }
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> norm_linear_backward_cpu(
    const at::Tensor& grad_, const at::Tensor& x_, const at::Tensor& gamma_, const at::Tensor& beta_,
    const at::Tensor& weight_, double eps) {
  constexpr const char* op = "upbench::norm_linear_backward";
  check_norm_linear(op, x_, gamma_, beta_, weight_, eps);
  check_norm_linear_grad(op, grad_, x_, weight_);
  check_cpu_dtype(op, x_);
  const at::Tensor x = x_.contiguous(), grad_out = grad_.contiguous();
  const at::Tensor gamma = contiguous_compute(gamma_), beta = contiguous_compute(beta_),
                   weight = contiguous_compute(weight_);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), P = H * W, d = weight.size(0);
  const at::Tensor AT = (weight * gamma.unsqueeze(0)).t().contiguous();  // A^T, (C, d)
  at::Tensor grad_x = at::empty({N, C, H, W}, x.options());
  const BackwardSums layout(C, d, weight.element_size());
  // Allocated here, not in the workers, for the memory probe (csrc/cpu/thread_scratch.h); zeroed, as a
  // thread may get no tiles.
  const at::Tensor thread_sums = at::zeros({at::get_num_threads(), layout.size()}, weight.options());
  UPBENCH_DISPATCH_CPU_DTYPES(x.scalar_type(), op, [&] {
    using T = compute_t<scalar_t>;
    const Tiling tiling = tiling_for<T>(N, C, P);
    const scalar_t *xs = x.data_ptr<scalar_t>(), *gs = grad_out.data_ptr<scalar_t>();
    const T* As = AT.data_ptr<T>();
    scalar_t* gx = grad_x.data_ptr<scalar_t>();
    T* ts = thread_sums.data_ptr<T>();
    parallel_with_scratch<T>(N * tiling.tiles, 1, backward_scratch(tiling, layout),
                             [&](int64_t begin, int64_t end, Arena<T> arena) {
                               backward_tiles_dispatch<T>(begin, end, arena, xs, gs, As, gx, ts, layout, P, tiling,
                                                          eps);
                             });
  });
  const at::Tensor sums = thread_sums.sum(0);
  const at::Tensor M = sums.narrow(0, 0, C * layout.dp).view({C, layout.dp}).narrow(1, 0, d).t() -
                       sums.narrow(0, layout.mean_term(), d).unsqueeze(1);
  auto [grad_gamma, grad_beta, grad_weight, grad_bias] =
      norm_linear_parameter_grads_from_sums(M, sums.narrow(0, layout.grad_bias(), d), gamma, beta, weight);
  const at::ScalarType st = x_.scalar_type();
  return {grad_x, grad_gamma.to(st), grad_beta.to(st), grad_weight.to(st), grad_bias.to(st)};
}

}  // namespace

TORCH_LIBRARY_IMPL(upbench, CPU, m) {
  m.impl("norm_linear", &norm_linear_cpu);
  m.impl("norm_linear_backward", &norm_linear_backward_cpu);
}

}  // namespace upbench
