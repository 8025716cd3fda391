// CUDA kernels for the upbench window ops. No torch headers: see window_ops_kernels.h.
//
// Storage types float, double, __half, __nv_bfloat16; arithmetic in float (double for double data).
// Indices are int64_t throughout and every kernel runs a grid-stride loop, so sizes past 2^31 elements
// work with a capped grid. One thread computes one output element: neighbouring threads differ in the
// output column, so the reads of the high-resolution operand coalesce and those of the low-resolution
// one hit the same or adjacent addresses (j / 2).
//
// A window tap outside the map multiplies its factor by zero rather than being skipped, as the CPU
// kernels and the reference's zero padding do: 0 * Inf and 0 * NaN give NaN there (csrc/upbench_ops.cpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "window_ops_kernels.h"

namespace upbench {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T narrow(typename Acc<T>::type v);
template <>
__device__ __forceinline__ float narrow<float>(float v) { return v; }
template <>
__device__ __forceinline__ double narrow<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half narrow<__half>(float v) { return __float2half(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }

inline unsigned int grid_for(int64_t work, int64_t per_block) {
  int64_t blocks = (work + per_block - 1) / per_block;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned int>(blocks);
}

// ---- window_dot: one thread per (n, k, i, j) ----------------------------------------------------------

template <typename T>
__global__ void window_dot_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                  int64_t N, int64_t Ca, int64_t H, int64_t W, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t Wo = 2 * W, HWo = 4 * H * W, HW = H * W, KK = K * K, R = K / 2;
  const int64_t total = N * KK * HWo;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pix = idx % HWo;
    const int64_t k = (idx / HWo) % KK;
    const int64_t n = idx / (HWo * KK);
    const int64_t i = pix / Wo, j = pix % Wo;
    const int64_t y = i / 2 + k / K - R, x = j / 2 + k % K - R;
    const bool inside = y >= 0 && y < H && x >= 0 && x < W;
    const T* ap = a + n * Ca * HWo + pix;
    const T* bp = b + n * Ca * HW + (inside ? y * W + x : 0);
    A acc = 0;
    for (int64_t c = 0; c < Ca; ++c) acc += A(widen(ap[c * HWo])) * (inside ? A(widen(bp[c * HW])) : A(0));
    out[idx] = narrow<T>(acc);
  }
}

// ---- window_gather: one thread per (n, c, i, j) -------------------------------------------------------

template <typename TW, typename T>
__global__ void window_gather_kernel(const TW* __restrict__ w, const T* __restrict__ x, T* __restrict__ out,
                                     int64_t N, int64_t C, int64_t H, int64_t W, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t Wo = 2 * W, HWo = 4 * H * W, HW = H * W, KK = K * K, R = K / 2;
  const int64_t total = N * C * HWo;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pix = idx % HWo;
    const int64_t nc = idx / HWo;  // n * C + c
    const int64_t n = nc / C;
    const int64_t p = (pix / Wo) / 2, q = (pix % Wo) / 2;
    const TW* wp = w + n * KK * HWo + pix;
    const T* xp = x + nc * HW;
    A acc = 0;
    for (int64_t ky = 0; ky < K; ++ky) {
      const int64_t yy = p + ky - R;
      const bool row_inside = yy >= 0 && yy < H;
      for (int64_t kx = 0; kx < K; ++kx) {
        const int64_t xx = q + kx - R;
        const bool inside = row_inside && xx >= 0 && xx < W;
        acc += A(widen(wp[(ky * K + kx) * HWo])) * (inside ? A(widen(xp[yy * W + xx])) : A(0));
      }
    }
    out[idx] = narrow<T>(acc);
  }
}

// ---- window_scatter (as a gather): one thread per low-resolution (n, c, h, x) ---------------------------

template <typename TW, typename T>
__global__ void window_scatter_kernel(const TW* __restrict__ w, const T* __restrict__ g, T* __restrict__ out,
                                      int64_t N, int64_t C, int64_t H, int64_t W, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t Wo = 2 * W, HWo = 4 * H * W, HW = H * W, KK = K * K, R = K / 2;
  const int64_t total = N * C * HW;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = (idx % HW) / W, xw = idx % W;
    const int64_t nc = idx / HW;
    const int64_t n = nc / C;
    const T* gp = g + nc * HWo;
    A acc = 0;
    for (int64_t ky = 0; ky < K; ++ky) {
      const int64_t p = h - ky + R;  // the parent whose window offset ky lands on row h
      if (p < 0 || p >= H) continue;
      for (int64_t kx = 0; kx < K; ++kx) {
        const int64_t q = xw - kx + R;
        if (q < 0 || q >= W) continue;
        const int64_t child = 2 * p * Wo + 2 * q;
        const TW* wk = w + (n * KK + ky * K + kx) * HWo + child;
        const T* gk = gp + child;
        acc += A(widen(wk[0])) * A(widen(gk[0])) + A(widen(wk[1])) * A(widen(gk[1])) +
               A(widen(wk[Wo])) * A(widen(gk[Wo])) + A(widen(wk[Wo + 1])) * A(widen(gk[Wo + 1]));
      }
    }
    out[idx] = narrow<T>(acc);
  }
}

// ---- sapa: a block owns `ppb` consecutive output pixels of one image ----------------------------------
//
// Stage 1 computes their ppb * K*K logits into shared memory (threads over (pixel, k), pixel fastest so
// the query reads coalesce), stage 2 turns each row into a softmax (one thread per pixel), stage 3
// assembles the value (threads over (pixel, channel)). The kernel never reaches global memory.

template <typename A>
__device__ void softmax_rows(A* s, int ppb, int64_t KK) {
  if (threadIdx.x < ppb) {
    A* row = s + threadIdx.x * KK;
    A m = row[0];
    for (int64_t k = 1; k < KK; ++k) m = row[k] > m ? row[k] : m;
    A sum = 0;
    for (int64_t k = 0; k < KK; ++k) {
      row[k] = exp_acc(row[k] - m);
      sum += row[k];
    }
    const A inv = A(1) / sum;
    for (int64_t k = 0; k < KK; ++k) row[k] *= inv;
  }
}

// s[pl * KK + k] = <a[:, pixel pl], b[:, window k of pixel pl]> for the block's pixels.
template <typename T, typename A>
__device__ void tile_dots(A* s, const T* __restrict__ a, const T* __restrict__ b, int64_t Ca, int64_t pix0,
                          int npix, int ppb, int64_t H, int64_t W, int64_t K) {
  const int64_t Wo = 2 * W, HWo = 4 * H * W, HW = H * W, KK = K * K, R = K / 2;
  for (int64_t e = threadIdx.x; e < ppb * KK; e += blockDim.x) {
    const int pl = static_cast<int>(e % ppb);
    const int64_t k = e / ppb;
    A acc = 0;
    if (pl < npix) {
      const int64_t pix = pix0 + pl;
      const int64_t y = (pix / Wo) / 2 + k / K - R, x = (pix % Wo) / 2 + k % K - R;
      const bool inside = y >= 0 && y < H && x >= 0 && x < W;
      const T* ap = a + pix;
      const T* bp = b + (inside ? y * W + x : 0);
      for (int64_t c = 0; c < Ca; ++c) acc += A(widen(ap[c * HWo])) * (inside ? A(widen(bp[c * HW])) : A(0));
    }
    s[pl * KK + k] = acc;
  }
}

template <typename T>
__global__ void sapa_forward_kernel(const T* __restrict__ query, const T* __restrict__ key,
                                    const T* __restrict__ value, T* __restrict__ out, int64_t N, int64_t d,
                                    int64_t C, int64_t H, int64_t W, int64_t K, int ppb) {
  using A = typename Acc<T>::type;
  extern __shared__ __align__(16) unsigned char smem[];  // read as float or double
  A* s = reinterpret_cast<A*>(smem);
  const int64_t Wo = 2 * W, HWo = 4 * H * W, HW = H * W, KK = K * K, R = K / 2;
  const int64_t tiles_per_image = (HWo + ppb - 1) / ppb;
  for (int64_t tile = blockIdx.x; tile < N * tiles_per_image; tile += gridDim.x) {
    const int64_t n = tile / tiles_per_image;
    const int64_t pix0 = (tile % tiles_per_image) * ppb;
    const int npix = static_cast<int>(HWo - pix0 < ppb ? HWo - pix0 : ppb);
    tile_dots(s, query + n * d * HWo, key + n * d * HW, d, pix0, npix, ppb, H, W, K);
    __syncthreads();
    softmax_rows(s, ppb, KK);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < ppb * C; e += blockDim.x) {
      const int pl = static_cast<int>(e % ppb);
      if (pl >= npix) continue;
      const int64_t c = e / ppb, pix = pix0 + pl;
      const int64_t p = (pix / Wo) / 2, q = (pix % Wo) / 2;
      const T* vp = value + (n * C + c) * HW;
      const A* row = s + pl * KK;
      A acc = 0;
      for (int64_t ky = 0; ky < K; ++ky) {
        const int64_t yy = p + ky - R;
        const bool row_inside = yy >= 0 && yy < H;
        for (int64_t kx = 0; kx < K; ++kx) {
          const int64_t xx = q + kx - R;
          const bool inside = row_inside && xx >= 0 && xx < W;
          acc += row[ky * K + kx] * (inside ? A(widen(vp[yy * W + xx])) : A(0));
        }
      }
      out[(n * C + c) * HWo + pix] = narrow<T>(acc);
    }
    __syncthreads();  // the next tile overwrites s
  }
}

template <typename T>
__global__ void sapa_backward_kernel(const T* __restrict__ query, const T* __restrict__ key,
                                     const T* __restrict__ value, const T* __restrict__ grad,
                                     typename Acc<T>::type* __restrict__ Pout,
                                     typename Acc<T>::type* __restrict__ Gout, int64_t N, int64_t d, int64_t C,
                                     int64_t H, int64_t W, int64_t K, int ppb) {
  using A = typename Acc<T>::type;
  extern __shared__ __align__(16) unsigned char smem[];  // read as float or double
  const int64_t HWo = 4 * H * W, HW = H * W, KK = K * K;
  A* P = reinterpret_cast<A*>(smem);
  A* G = P + ppb * KK;
  const int64_t tiles_per_image = (HWo + ppb - 1) / ppb;
  for (int64_t tile = blockIdx.x; tile < N * tiles_per_image; tile += gridDim.x) {
    const int64_t n = tile / tiles_per_image;
    const int64_t pix0 = (tile % tiles_per_image) * ppb;
    const int npix = static_cast<int>(HWo - pix0 < ppb ? HWo - pix0 : ppb);
    tile_dots(P, query + n * d * HWo, key + n * d * HW, d, pix0, npix, ppb, H, W, K);
    // dL/dP[k] = <grad, value window k>: the same window dot with (grad, value) for (query, key).
    tile_dots(G, grad + n * C * HWo, value + n * C * HW, C, pix0, npix, ppb, H, W, K);
    __syncthreads();
    softmax_rows(P, ppb, KK);
    if (threadIdx.x < ppb) {
      const A* prow = P + threadIdx.x * KK;
      A* grow = G + threadIdx.x * KK;
      A dot = 0;
      for (int64_t k = 0; k < KK; ++k) dot += prow[k] * grow[k];
      for (int64_t k = 0; k < KK; ++k) grow[k] = prow[k] * (grow[k] - dot);
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < ppb * KK; e += blockDim.x) {
      const int pl = static_cast<int>(e % ppb);
      if (pl >= npix) continue;
      const int64_t k = e / ppb;
      const int64_t o = (n * KK + k) * HWo + pix0 + pl;
      Pout[o] = P[pl * KK + k];
      Gout[o] = G[pl * KK + k];
    }
    __syncthreads();
  }
}

// Pixels per sapa block: the logit buffers (one forward, two backward) stay within 32 KiB for K = 15.
template <typename A>
int pixels_per_block(int buffers) {
  return 32 / (int(sizeof(A)) / 4) / buffers;
}

// ---- dispatch ----------------------------------------------------------------------------------------

template <typename T>
cudaError_t window_dot_impl(const void* a, const void* b, void* out, int64_t N, int64_t Ca, int64_t H, int64_t W,
                            int64_t K, cudaStream_t stream) {
  const int64_t total = N * K * K * 4 * H * W;
  if (total == 0) return cudaSuccess;
  window_dot_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), N, Ca, H, W, K);
  return cudaGetLastError();
}

template <typename TW, typename T>
cudaError_t window_gather_impl(const void* w, const void* x, void* out, int64_t N, int64_t C, int64_t H,
                               int64_t W, int64_t K, cudaStream_t stream) {
  const int64_t total = N * C * 4 * H * W;
  if (total == 0) return cudaSuccess;
  window_gather_kernel<TW, T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      static_cast<const TW*>(w), static_cast<const T*>(x), static_cast<T*>(out), N, C, H, W, K);
  return cudaGetLastError();
}

template <typename TW, typename T>
cudaError_t window_scatter_impl(const void* w, const void* g, void* out, int64_t N, int64_t C, int64_t H,
                                int64_t W, int64_t K, cudaStream_t stream) {
  const int64_t total = N * C * H * W;
  if (total == 0) return cudaSuccess;
  window_scatter_kernel<TW, T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      static_cast<const TW*>(w), static_cast<const T*>(g), static_cast<T*>(out), N, C, H, W, K);
  return cudaGetLastError();
}

template <typename T>
cudaError_t sapa_forward_impl(const void* q, const void* k, const void* v, void* out, int64_t N, int64_t d,
                              int64_t C, int64_t H, int64_t W, int64_t K, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  if (K > kMaxFusedK) return cudaErrorInvalidValue;
  if (N * C * H * W == 0) return cudaSuccess;
  const int ppb = pixels_per_block<A>(1);
  const size_t smem = size_t(ppb) * K * K * sizeof(A);
  sapa_forward_kernel<T><<<grid_for(N * ((4 * H * W + ppb - 1) / ppb), 1), kThreads, smem, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), N, d,
      C, H, W, K, ppb);
  return cudaGetLastError();
}

template <typename T>
cudaError_t sapa_backward_impl(const void* q, const void* k, const void* v, const void* grad, void* P, void* G,
                               int64_t N, int64_t d, int64_t C, int64_t H, int64_t W, int64_t K,
                               cudaStream_t stream) {
  using A = typename Acc<T>::type;
  if (K > kMaxFusedK) return cudaErrorInvalidValue;
  if (N * H * W == 0) return cudaSuccess;
  const int ppb = pixels_per_block<A>(2);
  const size_t smem = 2 * size_t(ppb) * K * K * sizeof(A);
  sapa_backward_kernel<T><<<grid_for(N * ((4 * H * W + ppb - 1) / ppb), 1), kThreads, smem, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<const T*>(grad),
      static_cast<A*>(P), static_cast<A*>(G), N, d, C, H, W, K, ppb);
  return cudaGetLastError();
}


// ---- reflect ops: same-size maps, each pixel's window centred on itself, mirrored at the border -----------

// The source index of padded index i of a map of n pixels (reflect padding: -1 -> 1, n -> n - 2).
__device__ __forceinline__ int64_t mirror(int64_t i, int64_t n) {
  return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
}

// The pixels p of a map of n whose tap at offset o lands on pixel s once mirrored, at most three, each once:
// p + o = s; p + o = -s (the top / left mirror of s, s > 0); p + o = 2(n - 1) - s (the bottom / right
// mirror, s < n - 1). Returns how many lie in [0, n).
__device__ __forceinline__ int reflect_preimages(int64_t s, int64_t o, int64_t n, int64_t* p) {
  int count = 0;
  const int64_t candidates[3] = {s - o, s > 0 ? -s - o : -1, s < n - 1 ? 2 * (n - 1) - s - o : -1};
  for (int c = 0; c < 3; ++c)
    if (candidates[c] >= 0 && candidates[c] < n) p[count++] = candidates[c];
  return count;
}

// Element idx of an (N, C, h, w) map: its image n, plane n * C + c, pixel y * w + x.
struct MapElement {
  int64_t n, nc, pix, y, x;
  __device__ MapElement(int64_t idx, int64_t C, int64_t h, int64_t w)
      : n(idx / (h * w) / C), nc(idx / (h * w)), pix(idx % (h * w)), y(pix / w), x(pix % w) {}
};

// reflect_dot: one thread per (n, k, y, x)
template <typename T>
__global__ void reflect_dot_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t N,
                                   int64_t Ca, int64_t h, int64_t w, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t hw = h * w, KK = K * K, R = K / 2;
  const int64_t total = N * KK * hw;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const MapElement e(idx, KK, h, w);  // an element of out (N, KK, h, w): its plane n * KK + k is tap k
    const int64_t k = e.nc % KK;
    const int64_t source = mirror(e.y + k / K - R, h) * w + mirror(e.x + k % K - R, w);
    const T* ap = a + e.n * Ca * hw + e.pix;
    const T* bp = b + e.n * Ca * hw + source;
    A acc = 0;
    for (int64_t c = 0; c < Ca; ++c) acc += A(widen(ap[c * hw])) * A(widen(bp[c * hw]));
    out[idx] = narrow<T>(acc);
  }
}

// reflect_gather: one thread per (n, c, y, x), the taps in order from zero
template <typename T>
__global__ void reflect_gather_kernel(const T* __restrict__ wt, const T* __restrict__ x, T* __restrict__ out,
                                      int64_t N, int64_t C, int64_t h, int64_t w, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t hw = h * w, KK = K * K, R = K / 2;
  const int64_t total = N * C * hw;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const MapElement e(idx, C, h, w);
    const int64_t y = e.y, xx = e.x;
    const T* wp = wt + e.n * KK * hw + e.pix;
    const T* xp = x + e.nc * hw;
    A acc = 0;
    for (int64_t ky = 0; ky < K; ++ky) {
      const int64_t row = mirror(y + ky - R, h) * w;
      for (int64_t kx = 0; kx < K; ++kx)
        acc += A(widen(wp[(ky * K + kx) * hw])) * A(widen(xp[row + mirror(xx + kx - R, w)]));
    }
    out[idx] = narrow<T>(acc);
  }
}

// reflect_scatter as a gather: one thread per (n, c, y, x), over the pixels whose reflected taps land there
template <typename T>
__global__ void reflect_scatter_kernel(const T* __restrict__ wt, const T* __restrict__ g, T* __restrict__ out,
                                       int64_t N, int64_t C, int64_t h, int64_t w, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t hw = h * w, KK = K * K, R = K / 2;
  const int64_t total = N * C * hw;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const MapElement e(idx, C, h, w);
    const int64_t n = e.n, y = e.y, xx = e.x;
    const T* gp = g + e.nc * hw;
    A acc = 0;
    for (int64_t ky = 0; ky < K; ++ky) {
      int64_t rows[3];
      const int row_count = reflect_preimages(y, ky - R, h, rows);
      for (int64_t kx = 0; kx < K; ++kx) {
        int64_t cols[3];
        const int col_count = reflect_preimages(xx, kx - R, w, cols);
        const T* wk = wt + (n * KK + ky * K + kx) * hw;
        for (int r = 0; r < row_count; ++r)
          for (int c = 0; c < col_count; ++c) {
            const int64_t p = rows[r] * w + cols[c];
            acc += A(widen(wk[p])) * A(widen(gp[p]));
          }
      }
    }
    out[idx] = narrow<T>(acc);
  }
}

// Launches `kernel` (one of the reflect kernels above) over `total` output elements: none when there are none.
template <typename T>
cudaError_t reflect_launch(void (*kernel)(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t),
                           int64_t total, const void* a, const void* b, void* out, int64_t N, int64_t C, int64_t h,
                           int64_t w, int64_t K, cudaStream_t stream) {
  if (total == 0) return cudaSuccess;
  kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(static_cast<const T*>(a), static_cast<const T*>(b),
                                                             static_cast<T*>(out), N, C, h, w, K);
  return cudaGetLastError();
}

template <typename T>
cudaError_t reflect_dot_impl(const void* a, const void* b, void* out, int64_t N, int64_t Ca, int64_t h, int64_t w,
                             int64_t K, cudaStream_t stream) {
  return reflect_launch<T>(reflect_dot_kernel<T>, N * K * K * h * w, a, b, out, N, Ca, h, w, K, stream);
}

template <typename T>
cudaError_t reflect_gather_impl(const void* wt, const void* x, void* out, int64_t N, int64_t C, int64_t h, int64_t w,
                                int64_t K, cudaStream_t stream) {
  return reflect_launch<T>(reflect_gather_kernel<T>, N * C * h * w, wt, x, out, N, C, h, w, K, stream);
}

template <typename T>
cudaError_t reflect_scatter_impl(const void* wt, const void* g, void* out, int64_t N, int64_t C, int64_t h, int64_t w,
                                 int64_t K, cudaStream_t stream) {
  return reflect_launch<T>(reflect_scatter_kernel<T>, N * C * h * w, wt, g, out, N, C, h, w, K, stream);
}

}  // namespace

cudaError_t launch_window_dot(DType dtype, const void* a, const void* b, void* out, int64_t N, int64_t Ca,
                              int64_t H, int64_t W, int64_t K, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32: return window_dot_impl<float>(a, b, out, N, Ca, H, W, K, stream);
    case DType::kFloat64: return window_dot_impl<double>(a, b, out, N, Ca, H, W, K, stream);
    case DType::kFloat16: return window_dot_impl<__half>(a, b, out, N, Ca, H, W, K, stream);
    case DType::kBFloat16: return window_dot_impl<__nv_bfloat16>(a, b, out, N, Ca, H, W, K, stream);
  }
  return cudaErrorInvalidValue;
}

// The weight type is the data type, or float32 for half/bfloat16 data (kernels from the sapa backward).
#define UPBENCH_WEIGHT_DISPATCH(IMPL, ...)                                                          \
  if (w_dtype == dtype) {                                                                          \
    switch (dtype) {                                                                               \
      case DType::kFloat32: return IMPL<float, float>(__VA_ARGS__);                               \
      case DType::kFloat64: return IMPL<double, double>(__VA_ARGS__);                             \
      case DType::kFloat16: return IMPL<__half, __half>(__VA_ARGS__);                             \
      case DType::kBFloat16: return IMPL<__nv_bfloat16, __nv_bfloat16>(__VA_ARGS__);              \
    }                                                                                              \
  } else if (w_dtype == DType::kFloat32 && dtype == DType::kFloat16) {                             \
    return IMPL<float, __half>(__VA_ARGS__);                                                       \
  } else if (w_dtype == DType::kFloat32 && dtype == DType::kBFloat16) {                            \
    return IMPL<float, __nv_bfloat16>(__VA_ARGS__);                                                \
  }                                                                                                \
  return cudaErrorInvalidValue;

cudaError_t launch_window_gather(DType w_dtype, DType dtype, const void* w, const void* x, void* out,
                                 int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, cudaStream_t stream) {
  UPBENCH_WEIGHT_DISPATCH(window_gather_impl, w, x, out, N, C, H, W, K, stream)
}

cudaError_t launch_window_scatter(DType w_dtype, DType dtype, const void* w, const void* g, void* out,
                                  int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, cudaStream_t stream) {
  UPBENCH_WEIGHT_DISPATCH(window_scatter_impl, w, g, out, N, C, H, W, K, stream)
}

#undef UPBENCH_WEIGHT_DISPATCH

cudaError_t launch_sapa_forward(DType dtype, const void* query, const void* key, const void* value, void* out,
                                int64_t N, int64_t d, int64_t C, int64_t H, int64_t W, int64_t K,
                                cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32: return sapa_forward_impl<float>(query, key, value, out, N, d, C, H, W, K, stream);
    case DType::kFloat64: return sapa_forward_impl<double>(query, key, value, out, N, d, C, H, W, K, stream);
    case DType::kFloat16: return sapa_forward_impl<__half>(query, key, value, out, N, d, C, H, W, K, stream);
    case DType::kBFloat16:
      return sapa_forward_impl<__nv_bfloat16>(query, key, value, out, N, d, C, H, W, K, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_sapa_backward_kernel(DType dtype, const void* query, const void* key, const void* value,
                                        const void* grad, void* P, void* G, int64_t N, int64_t d, int64_t C,
                                        int64_t H, int64_t W, int64_t K, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return sapa_backward_impl<float>(query, key, value, grad, P, G, N, d, C, H, W, K, stream);
    case DType::kFloat64:
      return sapa_backward_impl<double>(query, key, value, grad, P, G, N, d, C, H, W, K, stream);
    case DType::kFloat16:
      return sapa_backward_impl<__half>(query, key, value, grad, P, G, N, d, C, H, W, K, stream);
    case DType::kBFloat16:
      return sapa_backward_impl<__nv_bfloat16>(query, key, value, grad, P, G, N, d, C, H, W, K, stream);
  }
  return cudaErrorInvalidValue;
}

// One instantiation per storage type: IMPL<T>(args...) for dtype's T.
#define UPBENCH_DTYPE_DISPATCH(IMPL, ...)                                          \
  switch (dtype) {                                                                \
    case DType::kFloat32: return IMPL<float>(__VA_ARGS__);                        \
    case DType::kFloat64: return IMPL<double>(__VA_ARGS__);                       \
    case DType::kFloat16: return IMPL<__half>(__VA_ARGS__);                       \
    case DType::kBFloat16: return IMPL<__nv_bfloat16>(__VA_ARGS__);               \
  }                                                                               \
  return cudaErrorInvalidValue;

cudaError_t launch_reflect_dot(DType dtype, const void* a, const void* b, void* out, int64_t N, int64_t Ca,
                               int64_t h, int64_t w, int64_t K, cudaStream_t stream) {
  UPBENCH_DTYPE_DISPATCH(reflect_dot_impl, a, b, out, N, Ca, h, w, K, stream)
}

cudaError_t launch_reflect_gather(DType dtype, const void* wt, const void* x, void* out, int64_t N, int64_t C,
                                  int64_t h, int64_t w, int64_t K, cudaStream_t stream) {
  UPBENCH_DTYPE_DISPATCH(reflect_gather_impl, wt, x, out, N, C, h, w, K, stream)
}

cudaError_t launch_reflect_scatter(DType dtype, const void* wt, const void* g, void* out, int64_t N, int64_t C,
                                   int64_t h, int64_t w, int64_t K, cudaStream_t stream) {
  UPBENCH_DTYPE_DISPATCH(reflect_scatter_impl, wt, g, out, N, C, h, w, K, stream)
}

#undef UPBENCH_DTYPE_DISPATCH

}  // namespace cuda
}  // namespace upbench
