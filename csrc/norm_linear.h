// upbench::norm_linear = Linear(LayerNorm(x)) over the channels of each pixel of an NCHW map, with
// the LayerNorm folded into the projection. With A = W diag(gamma), s = A 1 and c0 = W beta + b:
//   y = W (gamma * (x - mean) * rstd + beta) + b = rstd * (A x - mean * s) + c0,
// so the map is read by one GEMM over NCHW and the per-pixel statistics are applied to the d outputs.
// Rounding: A x - mean * s cancels where |mean| is large against the spread of x; the error relative
// to |y| grows like machine epsilon * |mean| * rstd (the unfolded LayerNorm subtracts the mean first).
#pragma once

#include <ATen/ATen.h>

#include <tuple>
#include <utility>

#include "upbench_checks.h"

namespace upbench {

struct FoldedNormLinear {
  at::Tensor A, s, c0;  // (d, C), (d), (d)
};

inline FoldedNormLinear fold_norm_linear(const at::Tensor& gamma, const at::Tensor& beta,
                                         const at::Tensor& weight, const at::Tensor& bias) {
  at::Tensor A = (weight * gamma.unsqueeze(0)).contiguous();
  at::Tensor s = A.sum(1);
  at::Tensor c0 = at::addmv(bias, weight, beta);
  return {A, s.contiguous(), c0.contiguous()};
}

// Each pixel's mean and rstd over the channels of x (N, C, P), as (N, 1, P), in ATen ops.
inline std::pair<at::Tensor, at::Tensor> pixel_statistics(const at::Tensor& flat, double eps) {
  const at::Tensor mean = flat.mean(1, /*keepdim=*/true);
  return {mean, ((flat - mean).square().mean(1, /*keepdim=*/true) + eps).rsqrt()};
}

// Any device, in ATen ops.
inline at::Tensor norm_linear_composite(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                                        const at::Tensor& weight, const at::Tensor& bias, double eps) {
  check_norm_linear("upbench::norm_linear", x, gamma, beta, weight, bias, eps);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor flat = x.reshape({N, C, H * W});
  const auto [mean, rstd] = pixel_statistics(flat, eps);
  const FoldedNormLinear f = fold_norm_linear(gamma, beta, weight, bias);
  const at::Tensor y = (at::matmul(f.A, flat) - mean * f.s.unsqueeze(1)) * rstd + f.c0.unsqueeze(1);
  return y.view({N, f.A.size(0), H, W});
}

// (grad_gamma, grad_beta, grad_weight, grad_bias) of norm_linear from its two sums over the pixels,
// M = grad_out xhat^T (d, C) and grad_bias = grad_out 1 (d): grad_weight = M diag(gamma) + grad_bias beta^T,
// grad_gamma = colsum(W * M), grad_beta = W^T grad_bias.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> norm_linear_parameter_grads_from_sums(
    const at::Tensor& M, const at::Tensor& grad_bias, const at::Tensor& gamma, const at::Tensor& beta,
    const at::Tensor& weight) {
  return {(weight * M).sum(0), at::mv(weight.t(), grad_bias), M * gamma.unsqueeze(0) + at::outer(grad_bias, beta),
          grad_bias};
}

// The parameter gradients of norm_linear from the statistics (mean, rstd: (N, 1, P)), with
// M = grad_out xhat^T = (grad_out * rstd) x^T - (grad_out * rstd * mean) 1^T, a GEMM over the NCHW input
// (xhat, the normalised input, is never formed).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> norm_linear_parameter_grads(
    const at::Tensor& grad_out, const at::Tensor& flat, const at::Tensor& mean, const at::Tensor& rstd,
    const at::Tensor& gamma, const at::Tensor& beta, const at::Tensor& weight) {
  const at::Tensor scaled = grad_out * rstd;                                          // (N, d, P)
  const at::Tensor M = at::matmul(scaled, flat.transpose(1, 2)).sum(0) -            // (d, C)
                       (scaled * mean).sum(at::IntArrayRef{0, 2}).unsqueeze(1);
  return norm_linear_parameter_grads_from_sums(M, grad_out.sum(at::IntArrayRef{0, 2}), gamma, beta, weight);
}

// (grad_x, grad_gamma, grad_beta, grad_weight, grad_bias) of norm_linear, any device, in ATen ops.
// grad_x = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)) with g = A^T grad_out, the gradient of the
// normalised input.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> norm_linear_backward_composite(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
    const at::Tensor& weight, double eps) {
  const char* op = "upbench::norm_linear_backward";
  check_norm_linear(op, x, gamma, beta, weight, eps);
  check_norm_linear_grad(op, grad, x, weight);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), P = H * W;
  const at::Tensor flat = x.reshape({N, C, P});
  const at::Tensor grad_out = grad.reshape({N, weight.size(0), P});
  const auto [mean, rstd] = pixel_statistics(flat, eps);
  const at::Tensor A = weight * gamma.unsqueeze(0);
  const at::Tensor g = at::matmul(A.t(), grad_out);
  const at::Tensor xhat = (flat - mean) * rstd;
  const at::Tensor grad_x = rstd * (g - g.mean(1, true) - xhat * (g * xhat).mean(1, true));
  auto [grad_gamma, grad_beta, grad_weight, grad_bias] =
      norm_linear_parameter_grads(grad_out, flat, mean, rstd, gamma, beta, weight);
  return {grad_x.view({N, C, H, W}), grad_gamma, grad_beta, grad_weight, grad_bias};
}

}  // namespace upbench
