// CUDA registrations: validate, make inputs contiguous, pick the device and stream, call the torch-free
// launchers in window_ops_kernels.cu, and turn a launch error into a Python exception.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../norm_linear.h"
#include "../upbench_checks.h"
#include "window_ops_kernels.h"

namespace upbench {
namespace {

using cuda::DType;

DType to_dtype(const char* op, at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK(false, op, " (CUDA): dtype ", t,
                  " is not supported; the CUDA kernels take float32, float64, float16 and bfloat16");
  }
  return DType::kFloat32;  // unreachable
}

// The sapa backward keeps its recomputed kernel in float32 (float64 for float64 data).
at::ScalarType acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, " (CUDA): kernel launch failed: ", cudaGetErrorName(err), ": ",
              cudaGetErrorString(err));
}

cudaStream_t current_stream() {
  return c10::cuda::getCurrentCUDAStream().stream();
}

at::Tensor local_similarity_cuda(const at::Tensor& query_, const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::local_similarity";
  check_local_similarity(op, query_, key_, K);
  const DType dt = to_dtype(op, key_.scalar_type());
  const c10::cuda::CUDAGuard guard(key_.device());
  const at::Tensor query = query_.contiguous(), key = key_.contiguous();
  const int64_t N = key.size(0), d = key.size(1), H = key.size(2), W = key.size(3);
  at::Tensor out = at::empty({N, K * K, 2 * H, 2 * W}, key.options());
  check_launch(op, cuda::launch_window_dot(dt, query.const_data_ptr(), key.const_data_ptr(), out.data_ptr(), N, d,
                                           H, W, K, current_stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> local_similarity_backward_cuda(const at::Tensor& grad_,
                                                                  const at::Tensor& query_,
                                                                  const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::local_similarity_backward";
  check_local_similarity(op, query_, key_, K);
  const int64_t N = key_.size(0), d = key_.size(1), H = key_.size(2), W = key_.size(3);
  check_grad(op, grad_, {N, K * K, 2 * H, 2 * W}, key_);
  const DType dt = to_dtype(op, key_.scalar_type());
  const c10::cuda::CUDAGuard guard(key_.device());
  const at::Tensor grad = grad_.contiguous(), query = query_.contiguous(), key = key_.contiguous();
  at::Tensor grad_query = at::empty(query.sizes(), query.options());
  at::Tensor grad_key = at::empty(key.sizes(), key.options());
  const cudaStream_t stream = current_stream();
  // d/dquery = window_gather(grad, key); d/dkey = window_scatter(grad, query).
  check_launch(op, cuda::launch_window_gather(dt, dt, grad.const_data_ptr(), key.const_data_ptr(),
                                              grad_query.data_ptr(), N, d, H, W, K, stream));
  check_launch(op, cuda::launch_window_scatter(dt, dt, grad.const_data_ptr(), query.const_data_ptr(),
                                               grad_key.data_ptr(), N, d, H, W, K, stream));
  return {grad_query, grad_key};
}

at::Tensor dynamic_assembly_cuda(const at::Tensor& weights_, const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::dynamic_assembly";
  check_dynamic_assembly(op, weights_, x_, K);
  const DType dt = to_dtype(op, x_.scalar_type());
  const c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor weights = weights_.contiguous(), x = x_.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({N, C, 2 * H, 2 * W}, x.options());
  check_launch(op, cuda::launch_window_gather(dt, dt, weights.const_data_ptr(), x.const_data_ptr(), out.data_ptr(),
                                              N, C, H, W, K, current_stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> dynamic_assembly_backward_cuda(const at::Tensor& grad_,
                                                                  const at::Tensor& weights_,
                                                                  const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::dynamic_assembly_backward";
  check_dynamic_assembly(op, weights_, x_, K);
  const int64_t N = x_.size(0), C = x_.size(1), H = x_.size(2), W = x_.size(3);
  check_grad(op, grad_, {N, C, 2 * H, 2 * W}, x_);
  const DType dt = to_dtype(op, x_.scalar_type());
  const c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor grad = grad_.contiguous(), weights = weights_.contiguous(), x = x_.contiguous();
  at::Tensor grad_weights = at::empty(weights.sizes(), weights.options());
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  const cudaStream_t stream = current_stream();
  // d/dweights = window_dot(grad, x); d/dx = window_scatter(weights, grad).
  check_launch(op, cuda::launch_window_dot(dt, grad.const_data_ptr(), x.const_data_ptr(), grad_weights.data_ptr(),
                                           N, C, H, W, K, stream));
  check_launch(op, cuda::launch_window_scatter(dt, dt, weights.const_data_ptr(), grad.const_data_ptr(),
                                               grad_x.data_ptr(), N, C, H, W, K, stream));
  return {grad_weights, grad_x};
}

at::Tensor sapa_fused_cuda(const at::Tensor& query_, const at::Tensor& key_, const at::Tensor& value_, int64_t K) {
  constexpr const char* op = "upbench::sapa_fused";
  check_sapa_fused(op, query_, key_, value_, K);
  const DType dt = to_dtype(op, key_.scalar_type());
  const c10::cuda::CUDAGuard guard(key_.device());
  const at::Tensor query = query_.contiguous(), key = key_.contiguous(), value = value_.contiguous();
  const int64_t N = key.size(0), d = key.size(1), C = value.size(1), H = key.size(2), W = key.size(3);
  at::Tensor out = at::empty({N, C, 2 * H, 2 * W}, value.options());
  // The softmax kernel between the launcher's two kernels; freed (back to the caching allocator) on return.
  at::Tensor kernel = at::empty({N, K * K, 2 * H, 2 * W}, value.options().dtype(acc_type(value.scalar_type())));
  check_launch(op, cuda::launch_sapa_forward(dt, query.const_data_ptr(), key.const_data_ptr(),
                                             value.const_data_ptr(), out.data_ptr(), kernel.data_ptr(), N, d, C, H,
                                             W, K, current_stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sapa_fused_backward_cuda(const at::Tensor& grad_,
                                                                        const at::Tensor& query_,
                                                                        const at::Tensor& key_,
                                                                        const at::Tensor& value_, int64_t K) {
  constexpr const char* op = "upbench::sapa_fused_backward";
  check_sapa_fused(op, query_, key_, value_, K);
  const int64_t N = key_.size(0), d = key_.size(1), C = value_.size(1), H = key_.size(2), W = key_.size(3);
  check_grad(op, grad_, {N, C, 2 * H, 2 * W}, value_);
  const DType dt = to_dtype(op, key_.scalar_type());
  const c10::cuda::CUDAGuard guard(key_.device());
  const at::Tensor grad = grad_.contiguous(), query = query_.contiguous(), key = key_.contiguous(),
                   value = value_.contiguous();
  // The kernel and its logit gradient are recomputed here (never saved by the forward), in the
  // accumulation type so half/bfloat16 gradients do not lose the softmax's precision twice.
  const at::ScalarType at_acc = acc_type(key.scalar_type());
  const DType dt_acc = to_dtype(op, at_acc);
  at::Tensor P = at::empty({N, K * K, 2 * H, 2 * W}, key.options().dtype(at_acc));
  at::Tensor G = at::empty(P.sizes(), P.options());
  at::Tensor grad_query = at::empty(query.sizes(), query.options());
  at::Tensor grad_key = at::empty(key.sizes(), key.options());
  at::Tensor grad_value = at::empty(value.sizes(), value.options());
  const cudaStream_t stream = current_stream();
  check_launch(op, cuda::launch_sapa_backward_kernel(dt, query.const_data_ptr(), key.const_data_ptr(),
                                                     value.const_data_ptr(), grad.const_data_ptr(), P.data_ptr(),
                                                     G.data_ptr(), N, d, C, H, W, K, stream));
  check_launch(op, cuda::launch_window_gather(dt_acc, dt, G.const_data_ptr(), key.const_data_ptr(),
                                              grad_query.data_ptr(), N, d, H, W, K, stream));
  check_launch(op, cuda::launch_window_scatter(dt_acc, dt, G.const_data_ptr(), query.const_data_ptr(),
                                               grad_key.data_ptr(), N, d, H, W, K, stream));
  check_launch(op, cuda::launch_window_scatter(dt_acc, dt, P.const_data_ptr(), grad.const_data_ptr(),
                                               grad_value.data_ptr(), N, C, H, W, K, stream));
  return {grad_query, grad_key, grad_value};
}

at::Tensor reflect_similarity_cuda(const at::Tensor& query_, const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::reflect_similarity";
  check_reflect_similarity(op, query_, key_, K);
  const DType dt = to_dtype(op, key_.scalar_type());
  const c10::cuda::CUDAGuard guard(key_.device());
  const at::Tensor query = query_.contiguous(), key = key_.contiguous();
  const int64_t N = key.size(0), d = key.size(1), h = key.size(2), w = key.size(3);
  at::Tensor out = at::empty({N, K * K, h, w}, key.options());
  check_launch(op, cuda::launch_reflect_dot(dt, query.const_data_ptr(), key.const_data_ptr(), out.data_ptr(), N, d,
                                            h, w, K, current_stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> reflect_similarity_backward_cuda(const at::Tensor& grad_, const at::Tensor& query_,
                                                                    const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::reflect_similarity_backward";
  check_reflect_similarity(op, query_, key_, K);
  const int64_t N = key_.size(0), d = key_.size(1), h = key_.size(2), w = key_.size(3);
  check_grad(op, grad_, {N, K * K, h, w}, key_);
  const DType dt = to_dtype(op, key_.scalar_type());
  const c10::cuda::CUDAGuard guard(key_.device());
  const at::Tensor grad = grad_.contiguous(), query = query_.contiguous(), key = key_.contiguous();
  at::Tensor grad_query = at::empty(query.sizes(), query.options());
  at::Tensor grad_key = at::empty(key.sizes(), key.options());
  const cudaStream_t stream = current_stream();
  // d/dquery = reflect_gather(grad, key); d/dkey = reflect_scatter(grad, query).
  check_launch(op, cuda::launch_reflect_gather(dt, grad.const_data_ptr(), key.const_data_ptr(), grad_query.data_ptr(),
                                               N, d, h, w, K, stream));
  check_launch(op, cuda::launch_reflect_scatter(dt, grad.const_data_ptr(), query.const_data_ptr(),
                                                grad_key.data_ptr(), N, d, h, w, K, stream));
  return {grad_query, grad_key};
}

at::Tensor reflect_assembly_cuda(const at::Tensor& weights_, const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::reflect_assembly";
  check_reflect_assembly(op, weights_, x_, K);
  const DType dt = to_dtype(op, x_.scalar_type());
  const c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor weights = weights_.contiguous(), x = x_.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  check_launch(op, cuda::launch_reflect_gather(dt, weights.const_data_ptr(), x.const_data_ptr(), out.data_ptr(),
                                               x.size(0), x.size(1), x.size(2), x.size(3), K, current_stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> reflect_assembly_backward_cuda(const at::Tensor& grad_, const at::Tensor& weights_,
                                                                  const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::reflect_assembly_backward";
  check_reflect_assembly(op, weights_, x_, K);
  check_grad(op, grad_, x_.sizes(), x_);
  const DType dt = to_dtype(op, x_.scalar_type());
  const c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor grad = grad_.contiguous(), weights = weights_.contiguous(), x = x_.contiguous();
  const int64_t N = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor grad_weights = at::empty(weights.sizes(), weights.options());
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  const cudaStream_t stream = current_stream();
  // d/dweights = reflect_dot(grad, x); d/dx = reflect_scatter(weights, grad).
  check_launch(op, cuda::launch_reflect_dot(dt, grad.const_data_ptr(), x.const_data_ptr(), grad_weights.data_ptr(), N,
                                            C, h, w, K, stream));
  check_launch(op, cuda::launch_reflect_scatter(dt, weights.const_data_ptr(), grad.const_data_ptr(),
                                                grad_x.data_ptr(), N, C, h, w, K, stream));
  return {grad_weights, grad_x};
}

}  // namespace

TORCH_LIBRARY_IMPL(upbench, CUDA, m) {
  m.impl("local_similarity", &local_similarity_cuda);
  m.impl("local_similarity_backward", &local_similarity_backward_cuda);
  m.impl("dynamic_assembly", &dynamic_assembly_cuda);
  m.impl("dynamic_assembly_backward", &dynamic_assembly_backward_cuda);
  m.impl("sapa_fused", &sapa_fused_cuda);
  m.impl("sapa_fused_backward", &sapa_fused_backward_cuda);
  m.impl("reflect_similarity", &reflect_similarity_cuda);
  m.impl("reflect_similarity_backward", &reflect_similarity_backward_cuda);
  m.impl("reflect_assembly", &reflect_assembly_cuda);
  m.impl("reflect_assembly_backward", &reflect_assembly_backward_cuda);
  // GEMMs and reductions: cuBLAS and ATen's kernels
  m.impl("norm_linear", &norm_linear_composite);
  m.impl("norm_linear_backward", &norm_linear_backward_composite);
}

}  // namespace upbench
