// The CPU kernels' dtypes: float32 and float64 are computed in themselves; float16 and bfloat16 are
// computed and accumulated in float32. The window ops and norm_linear read and write them in place,
// widening as they load and rounding as they store (simd.h); contiguous_compute is the widened copy
// for what is small enough not to matter (norm_linear's parameters).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

// AT_DISPATCH over the dtypes the CPU kernels take (check_cpu_dtype).
#define UPBENCH_DISPATCH_CPU_DTYPES(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

namespace upbench {

// The compute dtype of a storage dtype S.
template <typename S>
using compute_t = at::opmath_type<S>;

inline at::ScalarType compute_type(const at::Tensor& t) {
  const at::ScalarType st = t.scalar_type();
  return (st == at::kHalf || st == at::kBFloat16) ? at::kFloat : st;
}

// t as a contiguous tensor of the compute dtype (one pass when it must be widened).
inline at::Tensor contiguous_compute(const at::Tensor& t) {
  if (compute_type(t) == t.scalar_type()) return t.contiguous();
  return at::empty(t.sizes(), t.options().dtype(compute_type(t))).copy_(t);
}

inline void check_cpu_dtype(const char* op, const at::Tensor& t) {
  const at::ScalarType st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              " (CPU): dtype ", st, " is not supported; the CPU kernels take float32, float64, float16 and "
              "bfloat16");
}

}  // namespace upbench
