// Input validation shared by the CPU and CUDA registrations, so both devices reject the same inputs
// with the same messages. Every message names the op and the shapes given and expected.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/safe_numerics.h>

#include <initializer_list>
#include <limits>
#include <string>

namespace upbench {

// sapa_fused keeps one pixel's K*K logits in a fixed-size array (registers / shared memory on CUDA,
// the stack on CPU), so K is capped there. The other ops stream over the window and take any odd K.
constexpr int64_t kMaxFusedK = 15;

inline void check_k(const char* op, int64_t K) {
  TORCH_CHECK(K >= 1 && K % 2 == 1, op, ": K must be an odd integer >= 1 (the window is centred on a pixel), got K=",
              K);
}

// The product of `factors`, or an error when it does not fit int64_t: the kernels compute flat int64_t
// offsets, so a size whose element count overflows would wrap around and index out of bounds.
inline int64_t checked_product(const char* op, const char* what, std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (int64_t f : factors) {
    TORCH_CHECK(f >= 0 && !c10::mul_overflows(product, f, &product), op, ": ", what, " (the product of ",
                c10::IntArrayRef(factors), ") exceeds ", std::numeric_limits<int64_t>::max(),
                ", the largest size the kernels can index");
  }
  return product;
}

// Every offset the kernels form lies within the work they do: each of the N x K*K x 2H x 2W
// (output pixel, tap) pairs reads `channels` values (at least one), so when that count fits int64_t
// so do the output, the inputs, the per-pixel buffers and every index into them.
inline void check_work(const char* op, const at::Tensor& lo, int64_t K, int64_t channels) {
  const int64_t KK = checked_product(op, "the window size K*K", {K, K});
  const int64_t Ho = checked_product(op, "2H", {2, lo.size(2)});
  const int64_t Wo = checked_product(op, "2W", {2, lo.size(3)});
  checked_product(op, "the window work N * K*K * 2H * 2W * channels",
                  {lo.size(0), KK, Ho, Wo, std::max<int64_t>(channels, 1)});
}

inline void check_rank4(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be a rank-4 NCHW tensor, got shape ", t.sizes());
}

inline void check_same(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                       const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
              " but ", ref_name, " has dtype ", ref.scalar_type(), "; all inputs must share one dtype");
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device(), "; all inputs must be on one device");
}

// `hi` is a 2H x 2W map that reads windows of the H x W map `lo`.
inline void check_hi_lo(const char* op, const char* hi_name, const at::Tensor& hi, const char* lo_name,
                        const at::Tensor& lo) {
  check_rank4(op, hi_name, hi);
  check_rank4(op, lo_name, lo);
  check_same(op, hi_name, hi, lo_name, lo);
  TORCH_CHECK(hi.size(0) == lo.size(0), op, ": batch sizes differ: ", hi_name, " ", hi.sizes(), " vs ",
              lo_name, " ", lo.sizes());
  checked_product(op, "2H", {2, lo.size(2)});
  checked_product(op, "2W", {2, lo.size(3)});
  TORCH_CHECK(hi.size(2) == 2 * lo.size(2) && hi.size(3) == 2 * lo.size(3), op, ": ", hi_name,
              " must be 2H x 2W of ", lo_name, " (H x W = ", lo.size(2), " x ", lo.size(3),
              ", so expected ", 2 * lo.size(2), " x ", 2 * lo.size(3), "), got ", hi_name, " ", hi.sizes(),
              " and ", lo_name, " ", lo.sizes());
}

inline void check_channels(const char* op, const char* a_name, const at::Tensor& a, const char* b_name,
                           const at::Tensor& b) {
  TORCH_CHECK(a.size(1) == b.size(1), op, ": ", a_name, " and ", b_name,
              " must have the same number of channels, got ", a_name, " ", a.sizes(), " and ", b_name, " ",
              b.sizes());
}

inline void check_grad(const char* op, const at::Tensor& grad, at::IntArrayRef expected,
                       const at::Tensor& like) {
  check_rank4(op, "grad", grad);
  TORCH_CHECK(grad.sizes() == expected, op, ": grad must have the forward output's shape ", expected,
              ", got ", grad.sizes());
  check_same(op, "grad", grad, "the forward inputs", like);
}

inline void check_local_similarity(const char* op, const at::Tensor& query, const at::Tensor& key,
                                   int64_t K) {
  check_k(op, K);
  check_hi_lo(op, "query (N, d, 2H, 2W)", query, "key (N, d, H, W)", key);
  check_channels(op, "query", query, "key", key);
  check_work(op, key, K, key.size(1));
}

inline void check_dynamic_assembly(const char* op, const at::Tensor& weights, const at::Tensor& x,
                                   int64_t K) {
  check_k(op, K);
  check_hi_lo(op, "weights (N, K*K, 2H, 2W)", weights, "x (N, C, H, W)", x);
  check_work(op, x, K, x.size(1));
  TORCH_CHECK(weights.size(1) == K * K, op, ": weights must have K*K = ", K * K, " channels for K=", K,
              ", got weights ", weights.sizes());
}

inline void check_sapa_fused(const char* op, const at::Tensor& query, const at::Tensor& key,
                             const at::Tensor& value, int64_t K) {
  check_k(op, K);
  TORCH_CHECK(K <= kMaxFusedK, op, ": K=", K, " exceeds the fused kernel's cap of K <= ", kMaxFusedK,
              " (each pixel's K*K logits live in a fixed-size buffer); use local_similarity + softmax + "
              "dynamic_assembly for larger windows");
  check_hi_lo(op, "query (N, d, 2H, 2W)", query, "key (N, d, H, W)", key);
  check_channels(op, "query", query, "key", key);
  check_rank4(op, "value", value);
  check_same(op, "value", value, "key", key);
  TORCH_CHECK(value.size(0) == key.size(0) && value.size(2) == key.size(2) && value.size(3) == key.size(3),
              op, ": value (N, C, H, W) must match key's N, H, W, got value ", value.sizes(), " and key ",
              key.sizes());
  int64_t channels = 0;
  TORCH_CHECK(!c10::add_overflows(key.size(1), value.size(1), &channels), op, ": d + C overflows int64");
  check_work(op, key, K, channels);
}

// The reflect ops: `a` and `b` are maps of one size that reflect padding by K/2 can mirror.
inline void check_reflect_pair(const char* op, int64_t K, const char* a_name, const at::Tensor& a,
                               const char* b_name, const at::Tensor& b) {
  check_k(op, K);
  check_rank4(op, a_name, a);
  check_rank4(op, b_name, b);
  check_same(op, a_name, a, b_name, b);
  TORCH_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(2) && a.size(3) == b.size(3), op, ": ", a_name,
              " and ", b_name, " must share N, h and w, got ", a_name, " ", a.sizes(), " and ", b_name, " ",
              b.sizes());
  const int64_t radius = K / 2;
  TORCH_CHECK(b.size(2) > radius && b.size(3) > radius, op, ": reflect padding by K/2 = ", radius,
              " needs h and w of at least ", radius + 1, " (K=", K, "), got ", b_name, " ", b.sizes());
  // the window work N * K*K * h * w * channels, as check_work for the 2x ops
  checked_product(op, "the window work N * K*K * h * w * channels",
                  {b.size(0), checked_product(op, "the window size K*K", {K, K}), b.size(2), b.size(3),
                   std::max<int64_t>(std::max(a.size(1), b.size(1)), 1)});
}

inline void check_reflect_similarity(const char* op, const at::Tensor& query, const at::Tensor& key, int64_t K) {
  check_reflect_pair(op, K, "query (N, d, h, w)", query, "key (N, d, h, w)", key);
  check_channels(op, "query", query, "key", key);
}

inline void check_reflect_assembly(const char* op, const at::Tensor& weights, const at::Tensor& x, int64_t K) {
  check_reflect_pair(op, K, "weights (N, K*K, h, w)", weights, "x (N, C, h, w)", x);
  TORCH_CHECK(weights.size(1) == K * K, op, ": weights must have K*K = ", K * K, " channels for K=", K,
              ", got weights ", weights.sizes());
}

// norm_linear's inputs but the bias (which its backward does not take).
inline void check_norm_linear(const char* op, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                              const at::Tensor& weight, double eps) {
  check_rank4(op, "x", x);
  const int64_t C = x.size(1);
  TORCH_CHECK(gamma.dim() == 1 && gamma.size(0) == C && beta.dim() == 1 && beta.size(0) == C, op,
              ": gamma and beta must be (C,) for x ", x.sizes(), ", got gamma ", gamma.sizes(), " and beta ",
              beta.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == C, op, ": weight must be (d, C) for x ", x.sizes(),
              ", got weight ", weight.sizes());
  TORCH_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  check_same(op, "gamma", gamma, "x", x);
  check_same(op, "beta", beta, "x", x);
  check_same(op, "weight", weight, "x", x);
  checked_product(op, "the projection work N * H * W * C * d",
                  {x.size(0), x.size(2), x.size(3), std::max<int64_t>(C, 1), std::max<int64_t>(weight.size(0), 1)});
}

inline void check_norm_linear(const char* op, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                              const at::Tensor& weight, const at::Tensor& bias, double eps) {
  check_norm_linear(op, x, gamma, beta, weight, eps);
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": bias must be (d,) for weight ",
              weight.sizes(), ", got bias ", bias.sizes());
  check_same(op, "bias", bias, "x", x);
}

inline void check_norm_linear_grad(const char* op, const at::Tensor& grad, const at::Tensor& x,
                                   const at::Tensor& weight) {
  check_grad(op, grad, {x.size(0), weight.size(0), x.size(2), x.size(3)}, x);
}

}  // namespace upbench
