// CPU kernels of upbench::norm_linear and its backward: LayerNorm over the channels of every pixel,
// then a Linear, on an NCHW map, without the channels-last copy nn.LayerNorm needs.
//
// The LayerNorm is folded into the projection (csrc/norm_linear.h): the map is read by GEMMs over
// NCHW, and each pixel's mean and rstd over the channels are applied to that pixel's outputs. The
// per-pixel passes are vectorised along the pixels (consecutive in NCHW) and work on a tile of pixels
// at a time, so their second read of a tile comes from cache.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "../norm_linear.h"
#include "../upbench_checks.h"
#include "dtypes.h"
#include "simd.h"

namespace upbench {
namespace {

constexpr int64_t kPixelTile = 256;

// Mean and rstd over the C channels (stride P apart) of the pixels at x[0 : n], lane by lane: the
// centred variance, from a second read of the same lines.
template <typename T, int B>
UPBENCH_INLINE void lane_statistics(const T* x, int64_t C, int64_t P, double eps, simd::Vec<T, B>& mean,
                                     simd::Vec<T, B>& rstd) {
  using V = simd::Vec<T, B>;
  const T inv_c = T(1) / T(C);
  V sum = {};
  for (int64_t c = 0; c < C; ++c) sum += simd::load<T, B>(x + c * P);
  mean = sum * inv_c;
  V squares = {};
  for (int64_t c = 0; c < C; ++c) {
    const V centred = simd::load<T, B>(x + c * P) - mean;
    squares += centred * centred;
  }
  for (int l = 0; l < simd::lanes<T, B>(); ++l) rstd[l] = T(1) / std::sqrt(squares[l] * inv_c + T(eps));
}

// The pixels [p0, p1) of tile `task` (task = image * tiles + tile) of a map with P pixels.
struct Tile {
  int64_t n, p0, p1;
  Tile(int64_t task, int64_t tiles, int64_t P)
      : n(task / tiles), p0((task % tiles) * kPixelTile), p1(std::min(P, (task % tiles + 1) * kPixelTile)) {}
};

// Forward epilogue over tiles: y (N, d, P) := rstd * (y - mean * s[j]) + c0[j], y holding A x.
template <typename T, int B>
UPBENCH_INLINE void normalize_tiles(int64_t begin, int64_t end, const T* x, T* y, const T* s, const T* c0,
                                    int64_t C, int64_t d, int64_t P, int64_t tiles, double eps) {
  constexpr int L = simd::lanes<T, B>();
  using V = simd::Vec<T, B>;
  using S = simd::Vec<T, sizeof(T)>;  // one lane: the pixels past the last whole vector
  for (int64_t task = begin; task < end; ++task) {
    const Tile tile(task, tiles, P);
    const T* xn = x + tile.n * C * P;
    T* yn = y + tile.n * d * P;
    int64_t pb = tile.p0;
    for (; pb + L <= tile.p1; pb += L) {
      V mean, rstd;
      lane_statistics<T, B>(xn + pb, C, P, eps, mean, rstd);
      const V shift = mean * rstd;
      for (int64_t j = 0; j < d; ++j) {
        T* out = yn + j * P + pb;
        simd::store<T, B>(out, simd::load<T, B>(out) * rstd - shift * s[j] + c0[j]);
      }
    }
    for (; pb < tile.p1; ++pb) {
      S mean, rstd;
      lane_statistics<T, sizeof(T)>(xn + pb, C, P, eps, mean, rstd);
      const T shift = mean[0] * rstd[0];
      for (int64_t j = 0; j < d; ++j) yn[j * P + pb] = yn[j * P + pb] * rstd[0] - shift * s[j] + c0[j];
    }
  }
}
UPBENCH_PER_ISA(normalize_tiles)

// Backward statistics: mean and rstd (N, P) of every pixel of x (N, C, P).
template <typename T, int B>
UPBENCH_INLINE void statistics_tiles(int64_t begin, int64_t end, const T* x, T* mean, T* rstd, int64_t C,
                                     int64_t P, int64_t tiles, double eps) {
  constexpr int L = simd::lanes<T, B>();
  for (int64_t task = begin; task < end; ++task) {
    const Tile tile(task, tiles, P);
    const T* xn = x + tile.n * C * P;
    const int64_t o = tile.n * P;
    int64_t pb = tile.p0;
    for (; pb + L <= tile.p1; pb += L) {
      simd::Vec<T, B> m, r;
      lane_statistics<T, B>(xn + pb, C, P, eps, m, r);
      simd::store<T, B>(mean + o + pb, m);
      simd::store<T, B>(rstd + o + pb, r);
    }
    for (; pb < tile.p1; ++pb) {
      simd::Vec<T, sizeof(T)> m, r;
      lane_statistics<T, sizeof(T)>(xn + pb, C, P, eps, m, r);
      mean[o + pb] = m[0];
      rstd[o + pb] = r[0];
    }
  }
}
UPBENCH_PER_ISA(statistics_tiles)

// grad_x from g = A^T grad_out (N, C, P), in place:
// g := rstd * (g - mean_c(g) - (x - mean) * rstd^2 * mean_c(g * (x - mean))).
template <typename T, int B>
UPBENCH_INLINE void input_grad_pixels(const T* x, T* g, const T* mean, const T* rstd, int64_t C, int64_t P) {
  using V = simd::Vec<T, B>;
  const T inv_c = T(1) / T(C);
  const V m = simd::load<T, B>(mean), r = simd::load<T, B>(rstd);
  V sum = {}, dot = {};
  for (int64_t c = 0; c < C; ++c) {
    const V gc = simd::load<T, B>(g + c * P);
    sum += gc;
    dot += gc * (simd::load<T, B>(x + c * P) - m);
  }
  const V a = sum * inv_c, b = dot * inv_c * r * r;
  for (int64_t c = 0; c < C; ++c) {
    const V gc = simd::load<T, B>(g + c * P), xc = simd::load<T, B>(x + c * P) - m;
    simd::store<T, B>(g + c * P, r * (gc - a - xc * b));
  }
}

template <typename T, int B>
UPBENCH_INLINE void input_grad_tiles(int64_t begin, int64_t end, const T* x, T* g, const T* mean, const T* rstd,
                                     int64_t C, int64_t P, int64_t tiles) {
  constexpr int L = simd::lanes<T, B>();
  for (int64_t task = begin; task < end; ++task) {
    const Tile tile(task, tiles, P);
    const int64_t image = tile.n * C * P, o = tile.n * P;
    int64_t pb = tile.p0;
    for (; pb + L <= tile.p1; pb += L) input_grad_pixels<T, B>(x + image + pb, g + image + pb, mean + o + pb, rstd + o + pb, C, P);
    for (; pb < tile.p1; ++pb)
      input_grad_pixels<T, sizeof(T)>(x + image + pb, g + image + pb, mean + o + pb, rstd + o + pb, C, P);
  }
}
UPBENCH_PER_ISA(input_grad_tiles)

int64_t tiles_of(int64_t P) {
  return (P + kPixelTile - 1) / kPixelTile;
}

at::Tensor norm_linear_cpu(const at::Tensor& x_, const at::Tensor& gamma, const at::Tensor& beta,
                           const at::Tensor& weight, const at::Tensor& bias, double eps) {
  constexpr const char* op = "upbench::norm_linear";
  check_norm_linear(op, x_, gamma, beta, weight, bias, eps);
  check_cpu_dtype(op, x_);
  const at::Tensor x = contiguous_compute(x_);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), P = H * W;
  const FoldedNormLinear folded = fold_norm_linear(contiguous_compute(gamma), contiguous_compute(beta), contiguous_compute(weight), contiguous_compute(bias));
  const int64_t d = folded.A.size(0);
  at::Tensor y = at::matmul(folded.A, x.view({N, C, P})).contiguous();  // (N, d, P)
  if (C > 0 && P > 0 && d > 0) {
    const int64_t tiles = tiles_of(P);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
      const scalar_t *xs = x.data_ptr<scalar_t>(), *s = folded.s.data_ptr<scalar_t>(),
                     *c0 = folded.c0.data_ptr<scalar_t>();
      scalar_t* ys = y.data_ptr<scalar_t>();
      at::parallel_for(0, N * tiles, 1, [&](int64_t begin, int64_t end) {
        normalize_tiles_dispatch<scalar_t>(begin, end, xs, ys, s, c0, C, d, P, tiles, eps);
      });
    });
  }
  return y.view({N, d, H, W}).to(x_.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> norm_linear_backward_cpu(
    const at::Tensor& grad_, const at::Tensor& x_, const at::Tensor& gamma_, const at::Tensor& beta_,
    const at::Tensor& weight_, double eps) {
  constexpr const char* op = "upbench::norm_linear_backward";
  check_norm_linear(op, x_, gamma_, beta_, weight_, eps);
  check_norm_linear_grad(op, grad_, x_, weight_);
  check_cpu_dtype(op, x_);
  const at::Tensor x = contiguous_compute(x_), gamma = contiguous_compute(gamma_), beta = contiguous_compute(beta_), weight = contiguous_compute(weight_);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), P = H * W, d = weight.size(0);
  const at::Tensor flat = x.view({N, C, P});
  const at::Tensor grad_out = contiguous_compute(grad_).view({N, d, P});
  at::Tensor mean = at::empty({N, 1, P}, x.options()), rstd = at::empty({N, 1, P}, x.options());
  at::Tensor grad_x = at::matmul((weight * gamma.unsqueeze(0)).t(), grad_out).contiguous();  // A^T grad_out
  if (C > 0 && P > 0) {
    const int64_t tiles = tiles_of(P);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
      const scalar_t* xs = x.data_ptr<scalar_t>();
      scalar_t *ms = mean.data_ptr<scalar_t>(), *rs = rstd.data_ptr<scalar_t>(), *gs = grad_x.data_ptr<scalar_t>();
      at::parallel_for(0, N * tiles, 1, [&](int64_t begin, int64_t end) {
        statistics_tiles_dispatch<scalar_t>(begin, end, xs, ms, rs, C, P, tiles, eps);
        input_grad_tiles_dispatch<scalar_t>(begin, end, xs, gs, ms, rs, C, P, tiles);
      });
    });
  }
  auto [grad_gamma, grad_beta, grad_weight, grad_bias] =
      norm_linear_parameter_grads(grad_out, flat, mean, rstd, gamma, beta, weight);
  const at::ScalarType st = x_.scalar_type();
  return {grad_x.view({N, C, H, W}).to(st), grad_gamma.to(st), grad_beta.to(st), grad_weight.to(st),
          grad_bias.to(st)};
}

}  // namespace

TORCH_LIBRARY_IMPL(upbench, CPU, m) {
  m.impl("norm_linear", &norm_linear_cpu);
  m.impl("norm_linear_backward", &norm_linear_backward_cpu);
}

}  // namespace upbench
