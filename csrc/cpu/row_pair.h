// Forward window ops computed on NCHW in place, one low-resolution row at a time, vectorised along
// the row.
//
// Low-resolution row p has four child rows' worth of outputs: child t = 2a + b of pixel (p, q) is
// output pixel (2p + a, 2q + b). For a fixed channel, the values a window tap (ky, kx) reads for
// consecutive q are consecutive in an NCHW row, so one vector load serves L pixels, and the four
// children's results are interleaved back into the two output rows with shuffles: vector stores, no
// NHWC copies of any input or output. The kernels keep:
//   - "lines": a low-resolution row of one channel with R zeros on each side, so every tap of every
//     lane is an in-bounds load; rows outside the map are a line of zeros. An out-of-map tap is thus
//     the reference's zero padding, multiplied in (0 * Inf = NaN) with no special case. A thread's
//     lines of the last K rows stay cached (LineCache), so each row is copied once per thread, not
//     once per window that reads it.
//   - per row, the children's per-tap values, [child t][tap k][q], q padded to a whole number of
//     vectors.
//   - per row, the children split per channel, [child t][channel c][q], each line with zeros before
//     it, so the adjoint's shifted loads (window_adjoint.h) read zeros past either end of the row.
// Both are in the compute dtype T. The maps themselves may be stored narrower (S: float16 / bfloat16
// for T = float): the copies into the lines and the splits widen them, and the stores of the outputs
// round, so no pass makes a widened copy of a whole map or of the output.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "simd.h"
#include "thread_scratch.h"

namespace upbench {
namespace row_pair {

using simd::lanes;
using simd::load;
using simd::store;
using simd::Vec;

// Sizes of one low-resolution row's work, for vectors of L lanes.
struct Shape {
  int64_t H, W, K, R, KK, Wo;
  int64_t Wp;  // W rounded up to whole vectors: the length of a per-child row
  int64_t Wl;  // Wp + 2R: the length of a zero-padded line
  Shape(int64_t h, int64_t w, int64_t k, int64_t L)
      : H(h), W(w), K(k), R(k / 2), KK(k * k), Wo(2 * w), Wp((w + L - 1) / L * L), Wl((w + L - 1) / L * L + k - 1) {}
};

// The shape for the widest vectors any instruction set here uses (64 bytes): buffers sized for it
// fit every kernel body.
template <typename T>
Shape widest_shape(int64_t H, int64_t W, int64_t K) {
  return Shape(H, W, K, 64 / static_cast<int64_t>(sizeof(T)));
}

// Per-thread buffers of the row kernels: the children of `hi_channels` channels split, and the
// per-tap values of one row, carved from the thread's zeroed scratch (thread_scratch.h). A child line
// starts `stride` after the previous one; the pad(s) zeros before each, never written, are at least R
// (the adjoint's shifted loads, window_adjoint.h) and a whole number of 64-byte vectors.
template <typename T>
struct Scratch {
  int64_t stride;
  T *children, *taps;
  static int64_t pad(const Shape& s) {
    constexpr int64_t widest = 64 / static_cast<int64_t>(sizeof(T));
    return (s.R + widest - 1) / widest * widest;
  }
  static int64_t size(const Shape& s, int64_t hi_channels) {
    return 4 * hi_channels * (s.Wp + pad(s)) + pad(s) + taps_size(s);
  }
  static int64_t taps_size(const Shape& s) { return 4 * s.KK * s.Wp; }
  Scratch(const Shape& s, int64_t hi_channels, Arena<T>& arena)
      : stride(s.Wp + pad(s)),
        children(arena.take(4 * hi_channels * stride + pad(s)) + pad(s)),
        taps(arena.take(taps_size(s))) {}
};

// The lines of one row of every channel: line c starts at base + c * stride (stride 0 for the one
// zero line that stands for a row outside the map).
template <typename T>
struct Lines {
  const T* base;
  int64_t stride;
  const T* operator[](int64_t c) const { return base + c * stride; }
};

// Zero-padded lines of every channel of the rows of NCHW images (channels, H, W) of any storage dtype,
// for the last K (image, row) pairs asked for: slot = row mod K, so the K rows of one window never evict each other
// and a thread that moves down one row per task copies one row of lines per task. The lines come
// from the thread's zeroed scratch; the K-entry bookkeeping vectors are too small to matter.
template <typename T>
class LineCache {
 public:
  static int64_t size(const Shape& s, int64_t channels) { return (s.K * channels + 1) * s.Wl; }
  LineCache(const Shape& s, int64_t channels, Arena<T>& arena)
      : s_(s),
        channels_(channels),
        lines_(arena.take(s.K * channels * s.Wl)),
        zero_(arena.take(s.Wl)),
        images_(s.K, nullptr),
        rows_(s.K, -1),
        window_(s.K) {}

  template <int B, typename S>
  UPBENCH_INLINE Lines<T> row(const S* image, int64_t y) {
    if (y < 0 || y >= s_.H) return {zero_, 0};
    const int64_t slot = y % s_.K;
    T* base = lines_ + slot * channels_ * s_.Wl;
    if (images_[slot] != image || rows_[slot] != y) {  // only the interiors: the padding stays zero
      for (int64_t c = 0; c < channels_; ++c)
        simd::copy<T, B>(base + c * s_.Wl + s_.R, image + (c * s_.H + y) * s_.W, s_.W);
      images_[slot] = image;
      rows_[slot] = y;
    }
    return {base, s_.Wl};
  }

  // The lines of rows p - R .. p + R, window row ky at [ky]: asked for before a kernel's loops, since
  // a call inside them would spill the accumulators around it.
  template <int B, typename S>
  UPBENCH_INLINE const Lines<T>* window(const S* image, int64_t p) {
    for (int64_t ky = 0; ky < s_.K; ++ky) window_[ky] = row<B>(image, p - s_.R + ky);
    return window_.data();
  }

 private:
  Shape s_;
  int64_t channels_;
  T *lines_, *zero_;
  std::vector<const void*> images_;
  std::vector<int64_t> rows_;
  std::vector<Lines<T>> window_;
};

// even[q] = row[2q], odd[q] = row[2q + 1] for q < W; zero up to Wp.
template <typename T, int B, typename S>
UPBENCH_INLINE void split_row(const S* row, const Shape& s, T* even, T* odd) {
  constexpr int L = lanes<T, B>();
  int64_t q = 0;
  for (; q + L <= s.W; q += L) {
    Vec<T, B> e, o;
    simd::unzip<T, B>(load<T, B>(row + 2 * q), load<T, B>(row + 2 * q + L), e, o);
    store<T, B>(even + q, e);
    store<T, B>(odd + q, o);
  }
  for (; q < s.W; ++q) {
    even[q] = static_cast<T>(row[2 * q]);
    odd[q] = static_cast<T>(row[2 * q + 1]);
  }
  std::fill(even + s.W, even + s.Wp, T(0));
  std::fill(odd + s.W, odd + s.Wp, T(0));
}

// row[2q + j] for the first n of the 2L values: zip of even (j = 0) and odd (j = 1).
template <typename T, int B, typename S>
UPBENCH_INLINE void store_zipped(S* row, Vec<T, B> even, Vec<T, B> odd, int64_t n) {
  constexpr int L = lanes<T, B>();
  Vec<T, B> low, high;
  simd::zip<T, B>(even, odd, low, high);
  if (n >= 2 * L) {
    store<T, B>(row, low);
    store<T, B>(row + L, high);
  } else if (n > L) {
    store<T, B>(row, low);
    simd::store_first<T, B>(row + L, high, n - L);
  } else {
    simd::store_first<T, B>(row, low, n);
  }
}

// The four children of every pixel of low-resolution row p, split per channel:
// children[(t * channels + c) * stride + q] = hi[c][2p + a][2q + b] for an NCHW image hi (channels, 2H, 2W).
template <typename T, int B, typename S>
UPBENCH_INLINE void split_children(const S* hi, int64_t channels, int64_t p, const Shape& s, T* children,
                                   int64_t stride) {
  const int64_t plane = channels * stride;
  for (int64_t c = 0; c < channels; ++c) {
    for (int a = 0; a < 2; ++a) {
      const S* row = hi + (c * 2 * s.H + 2 * p + a) * s.Wo;
      T* even = children + (2 * a) * plane + c * stride;
      split_row<T, B>(row, s, even, even + plane);
    }
  }
}

// logits[t][ky * K + kx][q] for kx in [kx0, kx0 + KX): <child t of (p, q), tap (ky, kx) of its
// window> over `channels` channels, from the children split per channel
// (children[(t * channels + c) * stride + q]) and window row ky's lines. The KX taps share each load
// of the four children, which for many channels come from L2.
template <typename T, int B, int KX>
UPBENCH_INLINE void window_row_dots_block(const T* children, int64_t stride, Lines<T> lines, int64_t channels,
                                          int64_t ky, int64_t kx0, const Shape& s, T* logits) {
  constexpr int L = lanes<T, B>();
  const int64_t plane = channels * stride;
  for (int64_t qb = 0; qb < s.Wp; qb += L) {
    Vec<T, B> acc[4][KX] = {};
    for (int64_t c = 0; c < channels; ++c) {
      const T* child = children + c * stride + qb;
      Vec<T, B> a[4];
      for (int t = 0; t < 4; ++t) a[t] = load<T, B>(child + t * plane);
      const T* line = lines[c] + qb + kx0;
      for (int j = 0; j < KX; ++j) {
        const Vec<T, B> tap = load<T, B>(line + j);
        for (int t = 0; t < 4; ++t) acc[t][j] += a[t] * tap;
      }
    }
    for (int t = 0; t < 4; ++t)
      for (int j = 0; j < KX; ++j) store<T, B>(logits + (t * s.KK + ky * s.K + kx0 + j) * s.Wp + qb, acc[t][j]);
  }
}

template <typename T, int B>
UPBENCH_INLINE void window_row_dots(const T* children, int64_t stride, Lines<T> lines, int64_t channels,
                                    int64_t ky, const Shape& s, T* logits) {
  // K = 5 in one block where 32 vector registers hold its 4 x 5 accumulators, 4 children and a tap: each
  // child is then loaded once per window row, not twice (a 4 + 1 split); 16 registers would spill.
  if constexpr (B >= 64) {
    if (s.K == 5) return window_row_dots_block<T, B, 5>(children, stride, lines, channels, ky, 0, s, logits);
  }
  int64_t kx0 = 0;
  for (; kx0 + 4 <= s.K; kx0 += 4)
    window_row_dots_block<T, B, 4>(children, stride, lines, channels, ky, kx0, s, logits);
  switch (s.K - kx0) {
    case 3: return window_row_dots_block<T, B, 3>(children, stride, lines, channels, ky, kx0, s, logits);
    case 2: return window_row_dots_block<T, B, 2>(children, stride, lines, channels, ky, kx0, s, logits);
    case 1: return window_row_dots_block<T, B, 1>(children, stride, lines, channels, ky, kx0, s, logits);
    default: return;
  }
}

// taps[t][k][q] = <child t of (p, q), tap k of its window> over `channels` channels, for every child
// of low-resolution row p: hi (channels, 2H, 2W) gives the children, lo (channels, H, W) the windows
// through lo_lines (a cache of `channels` channels).
template <typename T, int B, typename S>
UPBENCH_INLINE void children_dots(const S* hi, const S* lo, LineCache<T>& lo_lines, int64_t channels, int64_t p,
                                  const Shape& s, Scratch<T>& buf, T* taps) {
  split_children<T, B>(hi, channels, p, s, buf.children, buf.stride);
  const Lines<T>* rows = lo_lines.template window<B>(lo, p);
  for (int64_t ky = 0; ky < s.K; ++ky)
    window_row_dots<T, B>(buf.children, buf.stride, rows[ky], channels, ky, s, taps);
}

// Softmax over the taps k of logits[t][k][q], in place, for every child and pixel.
template <typename T, int B>
UPBENCH_INLINE void softmax_taps(T* logits, const Shape& s) {
  constexpr int L = lanes<T, B>();
  for (int t = 0; t < 4; ++t) {
    T* lt = logits + t * s.KK * s.Wp;
    for (int64_t qb = 0; qb < s.Wp; qb += L) {
      Vec<T, B> m = load<T, B>(lt + qb);
      for (int64_t k = 1; k < s.KK; ++k) m = simd::vmax<T, B>(m, load<T, B>(lt + k * s.Wp + qb));
      Vec<T, B> sum = {};
      for (int64_t k = 0; k < s.KK; ++k) {
        const Vec<T, B> e = simd::exp_nonpositive<T, B>(load<T, B>(lt + k * s.Wp + qb) - m);
        store<T, B>(lt + k * s.Wp + qb, e);
        sum += e;
      }
      const Vec<T, B> inv = T(1) / sum;
      for (int64_t k = 0; k < s.KK; ++k) store<T, B>(lt + k * s.Wp + qb, load<T, B>(lt + k * s.Wp + qb) * inv);
    }
  }
}

// Output rows 2p and 2p + 1 of every channel of an NCHW image (C, 2H, 2W):
// out[c][2p + a][2q + b] = sum_k weights[2a + b][k][q] * (tap k of (p, q) in channel c of `image`),
// whose lines come from image_lines (a cache of C channels). Channels go NC at a time so each weight
// vector loaded serves NC channels.
template <typename T, int B, typename S>
UPBENCH_INLINE void assemble_rows(const T* weights, const S* image, LineCache<T>& image_lines, int64_t C, int64_t p,
                                  const Shape& s, S* out) {
  constexpr int L = lanes<T, B>();
  constexpr int NC = B >= 64 ? 4 : 2;  // AVX-512 has the registers for 4 x 4 accumulators
  const Lines<T>* rows = image_lines.template window<B>(image, p);
  const int64_t tap_stride = s.Wp, child_stride = s.KK * s.Wp;
  for (int64_t c0 = 0; c0 < C; c0 += NC) {
    const int64_t nc = std::min<int64_t>(NC, C - c0);
    for (int64_t qb = 0; qb < s.Wp; qb += L) {
      Vec<T, B> acc[NC][4] = {};
      for (int64_t ky = 0; ky < s.K; ++ky) {
        const T* line[NC];  // a channel past C repeats the last one; its sums are not stored
        for (int j = 0; j < NC; ++j) line[j] = rows[ky][c0 + std::min<int64_t>(j, nc - 1)] + qb;
        for (int64_t kx = 0; kx < s.K; ++kx) {
          const T* w = weights + (ky * s.K + kx) * tap_stride + qb;
          Vec<T, B> wt[4];
          for (int t = 0; t < 4; ++t) wt[t] = load<T, B>(w + t * child_stride);
          for (int j = 0; j < NC; ++j) {
            const Vec<T, B> v = load<T, B>(line[j] + kx);
            for (int t = 0; t < 4; ++t) acc[j][t] += wt[t] * v;
          }
        }
      }
      const int64_t n = std::min<int64_t>(2 * L, s.Wo - 2 * qb);
      for (int j = 0; j < NC; ++j) {  // unrolled, so the accumulators never go through memory
        if (j >= nc) break;
        S* row = out + ((c0 + j) * 2 * s.H + 2 * p) * s.Wo + 2 * qb;
        store_zipped<T, B>(row, acc[j][0], acc[j][1], n);
        store_zipped<T, B>(row + s.Wo, acc[j][2], acc[j][3], n);
      }
    }
  }
}

// Writes the children's per-tap values taps[t][k][q] to rows 2p, 2p + 1 of an NCHW image
// (KK, 2H, 2W): image[k][2p + a][2q + b] = taps[2a + b][k][q].
template <typename T, int B, typename S>
UPBENCH_INLINE void store_children_taps(const T* taps, int64_t p, const Shape& s, S* image) {
  constexpr int L = lanes<T, B>();
  for (int64_t k = 0; k < s.KK; ++k) {
    for (int a = 0; a < 2; ++a) {
      const T* even = taps + ((2 * a) * s.KK + k) * s.Wp;
      const T* odd = even + s.KK * s.Wp;
      S* row = image + (k * 2 * s.H + 2 * p + a) * s.Wo;
      for (int64_t qb = 0; qb < s.Wp; qb += L)
        store_zipped<T, B>(row + 2 * qb, load<T, B>(even + qb), load<T, B>(odd + qb), std::min<int64_t>(2 * L, s.Wo - 2 * qb));
    }
  }
}

}  // namespace row_pair
}  // namespace upbench
