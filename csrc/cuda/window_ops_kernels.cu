// CUDA kernels for the upbench window ops. No torch headers: see window_ops_kernels.h.
//
// Storage types float, double, __half, __nv_bfloat16; arithmetic in float (double for double data).
// Indices are int64_t throughout and every kernel runs a grid-stride loop, so sizes past 2^31 elements
// work with a capped grid. A thread computes a block of outputs (see "blocking" below); neighbouring
// threads differ in the output column, so the reads of the high-resolution operand coalesce and those of
// the low-resolution one hit adjacent addresses.
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

// ---- blocking: what one thread keeps in registers ------------------------------------------------------
//
// A thread of a gather owns a block of kChannelBlock channels of one output place, so that each window
// weight and each tap's index are loaded and computed once for the block rather than once per channel (the
// weights were the largest traffic of one thread per element: read again for every channel). A thread of a
// dot owns a block of kTapBlock taps, so that the high-resolution operand is read once per block of taps
// rather than once per tap. The window ops' threads own the two horizontally adjacent children (2q, 2q + 1)
// of one parent, which share the parent's window and so every low-resolution load. Each output element is
// still summed in the order the one-thread-per-element kernels summed it: taps in order for a gather,
// channels in order for a dot.
constexpr int kChannelBlock = 8;
constexpr int kTapBlock = 8;

// acc[u][s] += sum_k w[k * HWo + s] * x[u * HW + window tap k of parent (p, q)], the taps in order, for the
// channels u < channels of the block and the two children s of the parent (w points at child 0's weight of
// tap 0). A tap outside the map multiplies its weight by zero.
template <typename TW, typename T, typename A>
__device__ __forceinline__ void gather_pair(A (&acc)[kChannelBlock][2], const TW* __restrict__ w,
                                            const T* __restrict__ x, int channels, int64_t p, int64_t q,
                                            int64_t H, int64_t W, int64_t K) {
  const int64_t HWo = 4 * H * W, HW = H * W, R = K / 2;
  for (int64_t ky = 0; ky < K; ++ky) {
    const int64_t yy = p + ky - R;
    const bool row_inside = yy >= 0 && yy < H;
    for (int64_t kx = 0; kx < K; ++kx) {
      const int64_t xx = q + kx - R;
      const bool inside = row_inside && xx >= 0 && xx < W;
      const int64_t tap = ky * K + kx;
      const A w0 = A(widen(w[tap * HWo])), w1 = A(widen(w[tap * HWo + 1]));
      const T* xk = x + (inside ? yy * W + xx : 0);
#pragma unroll
      for (int u = 0; u < kChannelBlock; ++u) {
        if (u < channels) {
          const A v = inside ? A(widen(xk[u * HW])) : A(0);
          acc[u][0] += w0 * v;
          acc[u][1] += w1 * v;
        }
      }
    }
  }
}

// acc[t][s] = sum_c a[c * HWo + s] * b[c * HW + window tap k0 + t of parent (p, q)], the channels in order,
// for the taps k0 + t < K*K of the block and the two children s (a points at child 0 of the pair).
template <typename T, typename A>
__device__ __forceinline__ void dot_pair(A (&acc)[kTapBlock][2], const T* __restrict__ a,
                                         const T* __restrict__ b, int64_t Ca, int64_t k0, int64_t p, int64_t q,
                                         int64_t H, int64_t W, int64_t K) {
  const int64_t HWo = 4 * H * W, HW = H * W, KK = K * K, R = K / 2;
  int64_t offset[kTapBlock];
  bool inside[kTapBlock];
#pragma unroll
  for (int t = 0; t < kTapBlock; ++t) {
    const int64_t k = k0 + t < KK ? k0 + t : KK - 1;
    const int64_t y = p + k / K - R, x = q + k % K - R;
    inside[t] = k0 + t < KK && y >= 0 && y < H && x >= 0 && x < W;
    offset[t] = inside[t] ? y * W + x : 0;
    acc[t][0] = acc[t][1] = A(0);
  }
  for (int64_t c = 0; c < Ca; ++c) {
    const A a0 = A(widen(a[c * HWo])), a1 = A(widen(a[c * HWo + 1]));
    const T* bc = b + c * HW;
#pragma unroll
    for (int t = 0; t < kTapBlock; ++t) {
      const A v = inside[t] ? A(widen(bc[offset[t]])) : A(0);
      acc[t][0] += a0 * v;
      acc[t][1] += a1 * v;
    }
  }
}

// Thread idx of a launch over (n, block, pair) with the pair fastest: a warp's lanes take adjacent parents
// of one output row, so the loads of both operands coalesce. A pair is one output row i and parent column
// q; its children are the output pixels i * 2W + 2q and the one after.
struct PairThread {
  int64_t n, block, i, q;
  __device__ PairThread(int64_t idx, int64_t blocks, int64_t H, int64_t W) {
    const int64_t pairs = 2 * H * W, pair = idx % pairs;
    block = (idx / pairs) % blocks;
    n = idx / pairs / blocks;
    i = pair / W;
    q = pair % W;
  }
  __device__ int64_t pixel(int64_t W) const { return i * 2 * W + 2 * q; }
};

__host__ __device__ inline int64_t blocks_of(int64_t count, int64_t per_block) {
  return (count + per_block - 1) / per_block;
}

// ---- window_dot: one thread per (n, block of taps, pair) ------------------------------------------------

template <typename T>
__global__ void window_dot_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                  int64_t N, int64_t Ca, int64_t H, int64_t W, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t HWo = 4 * H * W, HW = H * W, KK = K * K, tap_blocks = blocks_of(KK, kTapBlock);
  const int64_t total = N * tap_blocks * 2 * H * W;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const PairThread t(idx, tap_blocks, H, W);
    const int64_t pix = t.pixel(W), k0 = t.block * kTapBlock;
    A acc[kTapBlock][2];
    dot_pair(acc, a + t.n * Ca * HWo + pix, b + t.n * Ca * HW, Ca, k0, t.i / 2, t.q, H, W, K);
#pragma unroll
    for (int u = 0; u < kTapBlock; ++u) {
      if (k0 + u < KK) {
        T* o = out + (t.n * KK + k0 + u) * HWo + pix;
        o[0] = narrow<T>(acc[u][0]);
        o[1] = narrow<T>(acc[u][1]);
      }
    }
  }
}

// ---- window_gather: one thread per (n, block of channels, pair) ------------------------------------------

// Stores acc's channels u < channels to out[u * HWo + s], out pointing at child 0 of a pair.
template <typename T, typename A>
__device__ __forceinline__ void store_pair(T* out, const A (&acc)[kChannelBlock][2], int channels, int64_t HWo) {
#pragma unroll
  for (int u = 0; u < kChannelBlock; ++u) {
    if (u < channels) {
      out[u * HWo] = narrow<T>(acc[u][0]);
      out[u * HWo + 1] = narrow<T>(acc[u][1]);
    }
  }
}

template <typename TW, typename T>
__global__ void window_gather_kernel(const TW* __restrict__ w, const T* __restrict__ x, T* __restrict__ out,
                                     int64_t N, int64_t C, int64_t H, int64_t W, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t HWo = 4 * H * W, HW = H * W, KK = K * K, channel_blocks = blocks_of(C, kChannelBlock);
  const int64_t total = N * channel_blocks * 2 * H * W;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const PairThread t(idx, channel_blocks, H, W);
    const int64_t pix = t.pixel(W), c0 = t.block * kChannelBlock;
    const int channels = static_cast<int>(C - c0 < kChannelBlock ? C - c0 : kChannelBlock);
    A acc[kChannelBlock][2] = {};
    gather_pair(acc, w + t.n * KK * HWo + pix, x + (t.n * C + c0) * HW, channels, t.i / 2, t.q, H, W, K);
    store_pair(out + (t.n * C + c0) * HWo + pix, acc, channels, HWo);
  }
}

// ---- window_gather, tiled, for K = 3, 5, 7: one thread per pair of a tile ---------------------------------
//
// A block owns a tile of kTileRows output rows by kTileParents parents (one pair per thread; a warp is one
// output row) and up to kTileChannels channels. Each thread keeps its pair's 2 K*K weights in registers, and
// the block stages the tile's low-resolution window (kTileRows / 2 + 2R rows by kTileParents + 2R columns,
// zero outside the map) in shared memory a few channels at a time, so that each value is read from global
// memory once per tile rather than once per tap and child (H100, float32, C=256, 128x128 -> 256x256, K=5:
// 0.28 ms untiled, 0.10 ms tiled). Each output is still summed over the taps in order, from a zero outside
// the map, as above.
constexpr int kTileRows = 8, kTileParents = 32, kTileThreads = kTileRows * kTileParents, kTileChannels = 32;

template <typename TW, typename T, int K>
__global__ void __launch_bounds__(kTileThreads)
    window_gather_tiled_kernel(const TW* __restrict__ w, const T* __restrict__ x, T* __restrict__ out, int64_t N,
                               int64_t C, int64_t H, int64_t W) {
  using A = typename Acc<T>::type;
  constexpr int R = K / 2, KK = K * K, kRows = kTileRows / 2 + 2 * R, kCols = kTileParents + 2 * R;
  constexpr int kStaged = 64 / sizeof(A);  // channels staged at once: 16 in float, 8 in float64
  __shared__ A staged[kStaged][kRows][kCols];
  const int64_t Wo = 2 * W, HWo = 4 * H * W, HW = H * W;
  const int64_t tiles_y = blocks_of(2 * H, kTileRows), tiles_x = blocks_of(W, kTileParents);
  const int64_t splits = blocks_of(C, kTileChannels);
  const int row = threadIdx.x / kTileParents, lane = threadIdx.x % kTileParents;
  for (int64_t b = blockIdx.x; b < N * splits * tiles_y * tiles_x; b += gridDim.x) {
    const int64_t tx = b % tiles_x, ty = b / tiles_x % tiles_y, split = b / tiles_x / tiles_y % splits;
    const int64_t n = b / tiles_x / tiles_y / splits;
    const int64_t i = ty * kTileRows + row, q = tx * kTileParents + lane, pix = i * Wo + 2 * q;
    const bool active = i < 2 * H && q < W;
    // The staged window's first low-resolution row and column: the thread's tap (ky, kx) is staged at
    // [row / 2 + ky][lane + kx].
    const int64_t y0 = ty * (kTileRows / 2) - R, x0 = tx * kTileParents - R;
    A w0[KK], w1[KK];
#pragma unroll
    for (int k = 0; k < KK; ++k) {
      w0[k] = active ? A(widen(w[(n * KK + k) * HWo + pix])) : A(0);
      w1[k] = active ? A(widen(w[(n * KK + k) * HWo + pix + 1])) : A(0);
    }
    const int64_t c_end = (split + 1) * kTileChannels < C ? (split + 1) * kTileChannels : C;
    for (int64_t c0 = split * kTileChannels; c0 < c_end; c0 += kStaged) {
      const int channels = static_cast<int>(c_end - c0 < kStaged ? c_end - c0 : kStaged);
      for (int e = threadIdx.x; e < kStaged * kRows * kCols; e += kTileThreads) {
        const int u = e / (kRows * kCols), r = e / kCols % kRows, c = e % kCols;
        const int64_t y = y0 + r, xx = x0 + c;
        const bool inside = u < channels && y >= 0 && y < H && xx >= 0 && xx < W;
        staged[u][r][c] = inside ? A(widen(x[(n * C + c0 + u) * HW + y * W + xx])) : A(0);
      }
      __syncthreads();
      if (active) {
        for (int u = 0; u < channels; ++u) {
          A a0 = 0, a1 = 0;
#pragma unroll
          for (int ky = 0; ky < K; ++ky)
#pragma unroll
            for (int kx = 0; kx < K; ++kx) {
              const A v = staged[u][row / 2 + ky][lane + kx];
              a0 += w0[ky * K + kx] * v;
              a1 += w1[ky * K + kx] * v;
            }
          T* o = out + (n * C + c0 + u) * HWo + pix;
          o[0] = narrow<T>(a0);
          o[1] = narrow<T>(a1);
        }
      }
      __syncthreads();  // the next channels overwrite the stage
    }
  }
}

// ---- window_scatter (as a gather): one thread per low-resolution (n, block of channels, h, x) -----------

template <typename TW, typename T>
__global__ void window_scatter_kernel(const TW* __restrict__ w, const T* __restrict__ g, T* __restrict__ out,
                                      int64_t N, int64_t C, int64_t H, int64_t W, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t Wo = 2 * W, HWo = 4 * H * W, HW = H * W, KK = K * K, R = K / 2;
  const int64_t channel_blocks = blocks_of(C, kChannelBlock);
  const int64_t total = N * channel_blocks * HW;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = (idx % HW) / W, xw = idx % W;
    const int64_t block = (idx / HW) % channel_blocks, n = idx / HW / channel_blocks;
    const int64_t c0 = block * kChannelBlock;
    const int channels = static_cast<int>(C - c0 < kChannelBlock ? C - c0 : kChannelBlock);
    const T* gp = g + (n * C + c0) * HWo;
    A acc[kChannelBlock] = {};
    for (int64_t ky = 0; ky < K; ++ky) {
      const int64_t p = h - ky + R;  // the parent whose window offset ky lands on row h
      if (p < 0 || p >= H) continue;
      for (int64_t kx = 0; kx < K; ++kx) {
        const int64_t q = xw - kx + R;
        if (q < 0 || q >= W) continue;
        const int64_t child = 2 * p * Wo + 2 * q;
        const TW* wk = w + (n * KK + ky * K + kx) * HWo + child;
        const A w00 = A(widen(wk[0])), w01 = A(widen(wk[1])), w10 = A(widen(wk[Wo])), w11 = A(widen(wk[Wo + 1]));
#pragma unroll
        for (int u = 0; u < kChannelBlock; ++u) {
          if (u < channels) {
            const T* gk = gp + u * HWo + child;
            acc[u] += w00 * A(widen(gk[0])) + w01 * A(widen(gk[1])) + w10 * A(widen(gk[Wo])) +
                      w11 * A(widen(gk[Wo + 1]));
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kChannelBlock; ++u)
      if (u < channels) out[(n * C + c0 + u) * HW + h * W + xw] = narrow<T>(acc[u]);
  }
}

// ---- sapa: the kernel P = softmax_k(window_dot(query, key)), and in the backward its logit gradient ------
//
// A block owns `ppb` consecutive output pixels of one image (ppb even: whole pairs). Stage 1 computes their
// K*K logits each into shared memory (and, backward, the window dots of grad and value), stage 2 turns each
// pixel's logits into a softmax (and, backward, the logit gradient) with one thread per pixel, stage 3
// writes them out in the accumulation type. The forward then assembles the value with window_gather's
// tiled kernel, which keeps the weights in registers and the value window in shared memory: one assembly
// kernel per pixel block would have to recompute the logits for every block of channels or hold a tile too
// small to reuse the value window. Shared memory holds the values of tap k at s[k * ppb + pixel]: a warp's
// lanes read consecutive words.

// v[0], v[stride], ... v[(KK - 1) * stride] := their softmax.
template <typename A>
__device__ void softmax_in_place(A* v, int64_t KK, int64_t stride) {
  A m = v[0];
  for (int64_t k = 1; k < KK; ++k) m = v[k * stride] > m ? v[k * stride] : m;
  A sum = 0;
  for (int64_t k = 0; k < KK; ++k) {
    v[k * stride] = exp_acc(v[k * stride] - m);
    sum += v[k * stride];
  }
  const A inv = A(1) / sum;
  for (int64_t k = 0; k < KK; ++k) v[k * stride] *= inv;
}

// s[k * ppb + pl] = <a[:, pixel pix0 + pl], b[:, window tap k of its parent]> for the tile's npix pixels:
// threads over (pair, block of taps), the pair fastest so that the reads of a coalesce.
template <typename T, typename A>
__device__ void tile_dots(A* s, const T* __restrict__ a, const T* __restrict__ b, int64_t Ca, int64_t pix0,
                          int npix, int ppb, int64_t H, int64_t W, int64_t K) {
  const int64_t Wo = 2 * W, KK = K * K, tap_blocks = blocks_of(KK, kTapBlock);
  const int npairs = npix / 2;
  for (int64_t e = threadIdx.x; e < npairs * tap_blocks; e += blockDim.x) {
    const int pl = 2 * static_cast<int>(e % npairs);
    const int64_t k0 = e / npairs * kTapBlock, pix = pix0 + pl;
    A acc[kTapBlock][2];
    dot_pair(acc, a + pix, b, Ca, k0, pix / Wo / 2, pix % Wo / 2, H, W, K);
#pragma unroll
    for (int u = 0; u < kTapBlock; ++u) {
      if (k0 + u < KK) {
        s[(k0 + u) * ppb + pl] = acc[u][0];
        s[(k0 + u) * ppb + pl + 1] = acc[u][1];
      }
    }
  }
}

// The tile of block-loop step `tile`: its image, first pixel and pixel count (even, as HWo and ppb are).
struct Tile {
  int64_t n, pix0;
  int npix;
  __device__ Tile(int64_t tile, int64_t HWo, int ppb) {
    const int64_t tiles_per_image = blocks_of(HWo, ppb);
    n = tile / tiles_per_image;
    pix0 = (tile % tiles_per_image) * ppb;
    npix = static_cast<int>(HWo - pix0 < ppb ? HWo - pix0 : ppb);
  }
};

template <typename T, bool kBackward>
__global__ void sapa_softmax_kernel(const T* __restrict__ query, const T* __restrict__ key,
                                    const T* __restrict__ value, const T* __restrict__ grad,
                                    typename Acc<T>::type* __restrict__ Pout,
                                    typename Acc<T>::type* __restrict__ Gout, int64_t N, int64_t d, int64_t C,
                                    int64_t H, int64_t W, int64_t K, int ppb) {
  using A = typename Acc<T>::type;
  extern __shared__ __align__(16) unsigned char smem[];  // read as float or double
  const int64_t HWo = 4 * H * W, HW = H * W, KK = K * K;
  A* P = reinterpret_cast<A*>(smem);
  A* G = P + ppb * KK;  // backward only
  for (int64_t step = blockIdx.x; step < N * blocks_of(HWo, ppb); step += gridDim.x) {
    const Tile tile(step, HWo, ppb);
    const int64_t n = tile.n;
    tile_dots(P, query + n * d * HWo, key + n * d * HW, d, tile.pix0, tile.npix, ppb, H, W, K);
    // dL/dP[k] = <grad, value window k>: the same window dot with (grad, value) for (query, key).
    if (kBackward) tile_dots(G, grad + n * C * HWo, value + n * C * HW, C, tile.pix0, tile.npix, ppb, H, W, K);
    __syncthreads();
    if (threadIdx.x < tile.npix) {
      A* p = P + threadIdx.x;
      softmax_in_place(p, KK, ppb);
      if (kBackward) {
        A* g = G + threadIdx.x;
        A dot = 0;
        for (int64_t k = 0; k < KK; ++k) dot += p[k * ppb] * g[k * ppb];
        for (int64_t k = 0; k < KK; ++k) g[k * ppb] = p[k * ppb] * (g[k * ppb] - dot);
      }
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < tile.npix * KK; e += blockDim.x) {
      const int pl = static_cast<int>(e % tile.npix);
      const int64_t k = e / tile.npix;
      const int64_t o = (n * KK + k) * HWo + tile.pix0 + pl;
      Pout[o] = P[k * ppb + pl];
      if (kBackward) Gout[o] = G[k * ppb + pl];
    }
    __syncthreads();
  }
}

// Pixels per sapa block: even (a tile holds whole pairs), at most 128, and the block's logit buffers (one
// forward, two backward) within 32 KiB, which leaves 8 pixels at K = 15 in float64.
template <typename A>
int pixels_per_block(int buffers, int64_t KK) {
  const int64_t fit = 32768 / (buffers * KK * int64_t(sizeof(A)));
  return static_cast<int>((fit < 128 ? fit : 128) & ~int64_t(1));
}

// ---- dispatch ----------------------------------------------------------------------------------------

template <typename T>
cudaError_t window_dot_impl(const void* a, const void* b, void* out, int64_t N, int64_t Ca, int64_t H, int64_t W,
                            int64_t K, cudaStream_t stream) {
  const int64_t total = N * blocks_of(K * K, kTapBlock) * 2 * H * W;
  if (total == 0) return cudaSuccess;
  window_dot_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), N, Ca, H, W, K);
  return cudaGetLastError();
}

template <typename TW, typename T>
cudaError_t window_gather_impl(const void* w, const void* x, void* out, int64_t N, int64_t C, int64_t H,
                               int64_t W, int64_t K, cudaStream_t stream) {
  const int64_t total = N * blocks_of(C, kChannelBlock) * 2 * H * W;
  if (total == 0) return cudaSuccess;
  const int64_t tiles = N * blocks_of(C, kTileChannels) * blocks_of(2 * H, kTileRows) * blocks_of(W, kTileParents);
  const TW* wt = static_cast<const TW*>(w);
  const T* xt = static_cast<const T*>(x);
  T* o = static_cast<T*>(out);
  const unsigned int grid = grid_for(tiles, 1);
  switch (K) {
    case 3: window_gather_tiled_kernel<TW, T, 3><<<grid, kTileThreads, 0, stream>>>(wt, xt, o, N, C, H, W); break;
    case 5: window_gather_tiled_kernel<TW, T, 5><<<grid, kTileThreads, 0, stream>>>(wt, xt, o, N, C, H, W); break;
    case 7: window_gather_tiled_kernel<TW, T, 7><<<grid, kTileThreads, 0, stream>>>(wt, xt, o, N, C, H, W); break;
    default:
      window_gather_kernel<TW, T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(wt, xt, o, N, C, H, W, K);
  }
  return cudaGetLastError();
}

template <typename TW, typename T>
cudaError_t window_scatter_impl(const void* w, const void* g, void* out, int64_t N, int64_t C, int64_t H,
                                int64_t W, int64_t K, cudaStream_t stream) {
  const int64_t total = N * blocks_of(C, kChannelBlock) * H * W;
  if (total == 0) return cudaSuccess;
  window_scatter_kernel<TW, T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      static_cast<const TW*>(w), static_cast<const T*>(g), static_cast<T*>(out), N, C, H, W, K);
  return cudaGetLastError();
}

template <typename T>
cudaError_t sapa_forward_impl(const void* q, const void* k, const void* v, void* out, void* P, int64_t N,
                              int64_t d, int64_t C, int64_t H, int64_t W, int64_t K, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  if (K > kMaxFusedK) return cudaErrorInvalidValue;
  if (N * C * H * W == 0) return cudaSuccess;
  const int ppb = pixels_per_block<A>(1, K * K);
  const size_t smem = size_t(ppb) * K * K * sizeof(A);
  sapa_softmax_kernel<T, false><<<grid_for(N * blocks_of(4 * H * W, ppb), 1), kThreads, smem, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), nullptr, nullptr, static_cast<A*>(P), nullptr, N, d, C, H,
      W, K, ppb);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return window_gather_impl<A, T>(P, v, out, N, C, H, W, K, stream);
}

template <typename T>
cudaError_t sapa_backward_impl(const void* q, const void* k, const void* v, const void* grad, void* P, void* G,
                               int64_t N, int64_t d, int64_t C, int64_t H, int64_t W, int64_t K,
                               cudaStream_t stream) {
  using A = typename Acc<T>::type;
  if (K > kMaxFusedK) return cudaErrorInvalidValue;
  if (N * H * W == 0) return cudaSuccess;
  const int ppb = pixels_per_block<A>(2, K * K);
  const size_t smem = 2 * size_t(ppb) * K * K * sizeof(A);
  sapa_softmax_kernel<T, true><<<grid_for(N * blocks_of(4 * H * W, ppb), 1), kThreads, smem, stream>>>(
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

// Thread idx of a launch over (n, block, pixel) of (h, w) maps, the pixel fastest.
struct MapThread {
  int64_t n, block, pix, y, x;
  __device__ MapThread(int64_t idx, int64_t blocks, int64_t h, int64_t w)
      : n(idx / (h * w) / blocks), block(idx / (h * w) % blocks), pix(idx % (h * w)), y(pix / w), x(pix % w) {}
};

// reflect_dot: one thread per (n, block of taps, y, x)
template <typename T>
__global__ void reflect_dot_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t N,
                                   int64_t Ca, int64_t h, int64_t w, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t hw = h * w, KK = K * K, R = K / 2, tap_blocks = blocks_of(KK, kTapBlock);
  const int64_t total = N * tap_blocks * hw;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const MapThread t(idx, tap_blocks, h, w);
    const int64_t k0 = t.block * kTapBlock;
    int64_t source[kTapBlock];
#pragma unroll
    for (int u = 0; u < kTapBlock; ++u) {
      const int64_t k = k0 + u < KK ? k0 + u : KK - 1;
      source[u] = mirror(t.y + k / K - R, h) * w + mirror(t.x + k % K - R, w);
    }
    const T* ap = a + t.n * Ca * hw + t.pix;
    const T* bp = b + t.n * Ca * hw;
    A acc[kTapBlock] = {};
    for (int64_t c = 0; c < Ca; ++c) {
      const A av = A(widen(ap[c * hw]));
#pragma unroll
      for (int u = 0; u < kTapBlock; ++u) acc[u] += av * A(widen(bp[c * hw + source[u]]));
    }
#pragma unroll
    for (int u = 0; u < kTapBlock; ++u)
      if (k0 + u < KK) out[(t.n * KK + k0 + u) * hw + t.pix] = narrow<T>(acc[u]);
  }
}

// Stores acc's channels u < channels to out[u * hw].
template <typename T, typename A>
__device__ __forceinline__ void store_channels(T* out, const A (&acc)[kChannelBlock], int channels, int64_t hw) {
#pragma unroll
  for (int u = 0; u < kChannelBlock; ++u)
    if (u < channels) out[u * hw] = narrow<T>(acc[u]);
}

// reflect_gather: one thread per (n, block of channels, y, x), the taps in order from zero
template <typename T>
__global__ void reflect_gather_kernel(const T* __restrict__ wt, const T* __restrict__ x, T* __restrict__ out,
                                      int64_t N, int64_t C, int64_t h, int64_t w, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t hw = h * w, KK = K * K, R = K / 2, channel_blocks = blocks_of(C, kChannelBlock);
  const int64_t total = N * channel_blocks * hw;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const MapThread t(idx, channel_blocks, h, w);
    const int64_t c0 = t.block * kChannelBlock;
    const int channels = static_cast<int>(C - c0 < kChannelBlock ? C - c0 : kChannelBlock);
    const T* wp = wt + t.n * KK * hw + t.pix;
    const T* xp = x + (t.n * C + c0) * hw;
    A acc[kChannelBlock] = {};
    for (int64_t ky = 0; ky < K; ++ky) {
      const int64_t row = mirror(t.y + ky - R, h) * w;
      for (int64_t kx = 0; kx < K; ++kx) {
        const A wv = A(widen(wp[(ky * K + kx) * hw]));
        const T* xk = xp + row + mirror(t.x + kx - R, w);
#pragma unroll
        for (int u = 0; u < kChannelBlock; ++u)
          if (u < channels) acc[u] += wv * A(widen(xk[u * hw]));
      }
    }
    store_channels(out + (t.n * C + c0) * hw + t.pix, acc, channels, hw);
  }
}

// reflect_scatter as a gather: one thread per (n, block of channels, y, x), over the pixels whose reflected
// taps land there
template <typename T>
__global__ void reflect_scatter_kernel(const T* __restrict__ wt, const T* __restrict__ g, T* __restrict__ out,
                                       int64_t N, int64_t C, int64_t h, int64_t w, int64_t K) {
  using A = typename Acc<T>::type;
  const int64_t hw = h * w, KK = K * K, R = K / 2, channel_blocks = blocks_of(C, kChannelBlock);
  const int64_t total = N * channel_blocks * hw;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const MapThread t(idx, channel_blocks, h, w);
    const int64_t c0 = t.block * kChannelBlock;
    const int channels = static_cast<int>(C - c0 < kChannelBlock ? C - c0 : kChannelBlock);
    const T* gp = g + (t.n * C + c0) * hw;
    A acc[kChannelBlock] = {};
    for (int64_t ky = 0; ky < K; ++ky) {
      int64_t rows[3];
      const int row_count = reflect_preimages(t.y, ky - R, h, rows);
      for (int64_t kx = 0; kx < K; ++kx) {
        int64_t cols[3];
        const int col_count = reflect_preimages(t.x, kx - R, w, cols);
        const T* wk = wt + (t.n * KK + ky * K + kx) * hw;
        for (int r = 0; r < row_count; ++r)
          for (int c = 0; c < col_count; ++c) {
            const int64_t p = rows[r] * w + cols[c];
            const A wv = A(widen(wk[p]));
#pragma unroll
            for (int u = 0; u < kChannelBlock; ++u)
              if (u < channels) acc[u] += wv * A(widen(gp[u * hw + p]));
          }
      }
    }
    store_channels(out + (t.n * C + c0) * hw + t.pix, acc, channels, hw);
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
  return reflect_launch<T>(reflect_dot_kernel<T>, N * blocks_of(K * K, kTapBlock) * h * w, a, b, out, N, Ca, h, w,
                           K, stream);
}

template <typename T>
cudaError_t reflect_gather_impl(const void* wt, const void* x, void* out, int64_t N, int64_t C, int64_t h, int64_t w,
                                int64_t K, cudaStream_t stream) {
  return reflect_launch<T>(reflect_gather_kernel<T>, N * blocks_of(C, kChannelBlock) * h * w, wt, x, out, N, C, h, w,
                           K, stream);
}

template <typename T>
cudaError_t reflect_scatter_impl(const void* wt, const void* g, void* out, int64_t N, int64_t C, int64_t h, int64_t w,
                                 int64_t K, cudaStream_t stream) {
  return reflect_launch<T>(reflect_scatter_kernel<T>, N * blocks_of(C, kChannelBlock) * h * w, wt, g, out, N, C, h, w,
                           K, stream);
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
                                void* P, int64_t N, int64_t d, int64_t C, int64_t H, int64_t W, int64_t K,
                                cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32: return sapa_forward_impl<float>(query, key, value, out, P, N, d, C, H, W, K, stream);
    case DType::kFloat64: return sapa_forward_impl<double>(query, key, value, out, P, N, d, C, H, W, K, stream);
    case DType::kFloat16: return sapa_forward_impl<__half>(query, key, value, out, P, N, d, C, H, W, K, stream);
    case DType::kBFloat16:
      return sapa_forward_impl<__nv_bfloat16>(query, key, value, out, P, N, d, C, H, W, K, stream);
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
