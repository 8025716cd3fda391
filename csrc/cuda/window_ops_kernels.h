// Host launchers for the upbench CUDA kernels. Torch-free on purpose: window_ops_kernels.cu builds with
// plain `nvcc -c`, and only window_ops_cuda.cpp (the TORCH_LIBRARY_IMPL) sees ATen.
//
// Every tensor argument is a contiguous NCHW buffer on the current device. Low-resolution maps are
// H x W, high-resolution maps 2H x 2W; K is odd. Each launcher enqueues on `stream` and returns the
// launch error (cudaSuccess when none); a zero-sized problem launches nothing.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace upbench {
namespace cuda {

enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Largest K that sapa_fused accepts (each block keeps its pixels' K*K logits in shared memory).
constexpr int64_t kMaxFusedK = 15;

// out (N, K*K, 2H, 2W) = <a (N, Ca, 2H, 2W), b (N, Ca, H, W) at window k>, zero outside the map.
cudaError_t launch_window_dot(DType dtype, const void* a, const void* b, void* out, int64_t N, int64_t Ca,
                              int64_t H, int64_t W, int64_t K, cudaStream_t stream);

// out (N, C, 2H, 2W) = sum_k w (N, K*K, 2H, 2W) * x (N, C, H, W) at window k.
// w_dtype is either dtype or, for half/bfloat16 data, float32 (the sapa backward's float kernels).
cudaError_t launch_window_gather(DType w_dtype, DType dtype, const void* w, const void* x, void* out,
                                 int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, cudaStream_t stream);

// Adjoint of window_gather in x: out (N, C, H, W) = sum over the children (i, j) whose window k holds
// a pixel of w[k, i, j] * g[:, i, j]. g is (N, C, 2H, 2W). Written as a gather: no atomics.
cudaError_t launch_window_scatter(DType w_dtype, DType dtype, const void* w, const void* g, void* out,
                                  int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, cudaStream_t stream);

// out (N, C, 2H, 2W) = window_gather(P, value) with P = softmax_k(window_dot(query, key)) in two kernels:
// the first writes P (N, K*K, 2H, 2W) in the accumulation type (float64 for float64 data, float32
// otherwise) to the caller's scratch P, the second assembles from it. query (N, d, 2H, 2W),
// key (N, d, H, W), value (N, C, H, W). K <= kMaxFusedK.
cudaError_t launch_sapa_forward(DType dtype, const void* query, const void* key, const void* value, void* out,
                                void* P, int64_t N, int64_t d, int64_t C, int64_t H, int64_t W, int64_t K,
                                cudaStream_t stream);

// First pass of the sapa backward: recomputes the softmax kernel P and the logit gradient
// G = P * (<grad, value window k> - sum_k P * <grad, value window k>), both written as
// (N, K*K, 2H, 2W) in the accumulation type (float64 for float64 data, float32 otherwise).
cudaError_t launch_sapa_backward_kernel(DType dtype, const void* query, const void* key, const void* value,
                                        const void* grad, void* P, void* G, int64_t N, int64_t d, int64_t C,
                                        int64_t H, int64_t W, int64_t K, cudaStream_t stream);

// ---- reflect ops: maps of one size h x w, each pixel's K x K window centred on itself, the border the
// map's mirror image (reflect padding; h and w above K/2) -------------------------------------------------

// out (N, K*K, h, w) = <a (N, Ca, h, w), b (N, Ca, h, w) at reflected window k>.
cudaError_t launch_reflect_dot(DType dtype, const void* a, const void* b, void* out, int64_t N, int64_t Ca,
                               int64_t h, int64_t w, int64_t K, cudaStream_t stream);

// out (N, C, h, w) = sum_k wt (N, K*K, h, w) * x (N, C, h, w) at reflected window k.
cudaError_t launch_reflect_gather(DType dtype, const void* wt, const void* x, void* out, int64_t N, int64_t C,
                                  int64_t h, int64_t w, int64_t K, cudaStream_t stream);

// Adjoint of reflect_gather in x: out (N, C, h, w) at a pixel = sum over the (pixel, tap) pairs whose
// reflected tap lands on it of wt * g there. g is (N, C, h, w). Written as a gather: no atomics.
cudaError_t launch_reflect_scatter(DType dtype, const void* wt, const void* g, void* out, int64_t N, int64_t C,
                                   int64_t h, int64_t w, int64_t K, cudaStream_t stream);

}  // namespace cuda
}  // namespace upbench
