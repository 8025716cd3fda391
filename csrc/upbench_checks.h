// Input validation shared by the CPU and CUDA registrations, so both devices reject the same inputs
// with the same messages. Every message names the op and the shapes given and expected.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace upbench {

// sapa_fused keeps one pixel's K*K logits in a fixed-size array (registers / shared memory on CUDA,
// the stack on CPU), so K is capped there. The other ops stream over the window and take any odd K.
constexpr int64_t kMaxFusedK = 15;

inline void check_k(const char* op, int64_t K) {
  TORCH_CHECK(K >= 1 && K % 2 == 1, op, ": K must be an odd integer >= 1 (the window is centred on the "
              "low-resolution parent), got K=", K);
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
}

inline void check_dynamic_assembly(const char* op, const at::Tensor& weights, const at::Tensor& x,
                                   int64_t K) {
  check_k(op, K);
  check_hi_lo(op, "weights (N, K*K, 2H, 2W)", weights, "x (N, C, H, W)", x);
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
}

}  // namespace upbench
