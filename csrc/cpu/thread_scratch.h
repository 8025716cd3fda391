// Per-thread scratch of a parallel pass, cut from one tensor that the calling thread allocates.
//
// Why not a std::vector (or an at::empty) in each worker: torch's profiler, which upbench's CPU peak
// memory reads, records only the allocations of the thread it was started on, and std::vector does
// not go through torch's allocator at all. Scratch allocated by the workers would be missing from the
// peak, by K*C*(W + K)*4 bytes and more per thread: on a many-core CPU a sizeable part of the op's
// real footprint. One pool per pass, allocated before the workers start, is seen whole.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace upbench {

// A bump allocator over one thread's share of the pool: the kernels' buffers are carved from it in
// the order they are built. Sizes come from the widest vector shape, so every instruction set fits.
template <typename T>
class Arena {
 public:
  Arena(T* begin, int64_t size) : next_(begin), end_(begin + size) {}
  T* take(int64_t n) {
    TORCH_CHECK(n >= 0 && n <= end_ - next_, "upbench: CPU kernel scratch of ", n, " elements asked for, ",
                end_ - next_, " left in this thread's share (an internal sizing error)");
    T* taken = next_;
    next_ += n;
    return taken;
  }

 private:
  T* next_;
  T* end_;
};

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Tasks per parallel chunk so that a chunk does at least ~64K multiply-adds: small problems run
// inline instead of paying for a parallel region (costly when the cores are shared).
inline int64_t grain_for(int64_t work_per_task) {
  constexpr int64_t kMinWork = int64_t(1) << 16;
  return std::max<int64_t>(1, kMinWork / std::max<int64_t>(1, work_per_task));
}

// at::parallel_for(0, n, grain, body) where body(begin, end, arena) gets a zeroed share of
// `per_thread` elements. One share per chunk that can run at once: parallel_for makes at most
// min(threads, ceil(n / grain)) chunks, and runs inline (thread 0) when n <= grain, so a small
// problem run on one thread reports one share, not one per core.
template <typename T, typename Body>
void parallel_with_scratch(int64_t n, int64_t grain, int64_t per_thread, const Body& body) {
  if (n <= 0) return;
  const int64_t chunks = n > grain ? (n + grain - 1) / grain : 1;
  const int64_t shares = std::min<int64_t>(std::max(1, at::get_num_threads()), chunks);
  const at::Tensor pool = at::empty({shares * per_thread}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  T* base = pool.data_ptr<T>();
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    const int64_t thread = at::get_thread_num();
    TORCH_CHECK(thread < shares, "upbench: CPU kernel chunk on thread ", thread, " but scratch for ", shares,
                " threads (an internal sizing error)");
    T* share = base + thread * per_thread;
    std::fill(share, share + per_thread, T(0));  // the kernels' zero padding lives in the scratch
    body(begin, end, Arena<T>(share, per_thread));
  });
}

}  // namespace upbench
