// The adjoint of the assembly with respect to its low-resolution input, on NCHW in place.
//
// The assembly's output pixel (2p + a, 2q + b) adds w[k] * x[tap k of (p, q)] for each of its K*K
// taps, so the adjoint gives every low-resolution pixel (y, x) the sum, over the parents (p, q) whose
// window holds it (tap k = (y - p + R, x - q + R)) and their four children t = 2a + b, of
// w[k][2p + a][2q + b] * hi[2p + a][2q + b]. Written as a gather over parents, threads never write to
// one location and no atomics are needed.
//
// Vectorised along x: for a fixed parent row p, window column kx and child t, the parents of
// consecutive x are consecutive q = x + R - kx, so both factors are one (shifted) vector load from a
// zero-padded "line" of the children split per parity (row_pair.h). A parent outside the map is zero
// padding in both lines, and adds 0 * 0.
//
// The weights are split once per call into the "split taps" layout:
//   split[n * H + p][t][k][R + q] = w[n][k][2p + a][2q + b], zero for q outside [0, W),
// a line of Shape::Wl = Wp + 2R per (child, tap).
#pragma once

#include <algorithm>
#include <cstring>

#include "row_pair.h"
#include "simd.h"
#include "thread_scratch.h"

namespace upbench {
namespace window_adjoint {

using row_pair::Shape;
using simd::lanes;
using simd::load;
using simd::Vec;

// The split taps' shape: lines rounded to 64-byte vectors, whatever the instruction set, so the
// layout is one for every kernel body that writes or reads it.
template <typename T>
Shape split_shape(int64_t H, int64_t W, int64_t K) {
  return row_pair::widest_shape<T>(H, W, K);
}

// Floats of one low-resolution row's split taps.
inline int64_t split_row_size(const Shape& s) { return 4 * s.KK * s.Wl; }

// Split taps of low-resolution row p from an NCHW image of weights (KK, 2H, 2W), stored as T or
// narrower (row_pair.h).
template <typename T, int B, typename S>
UPBENCH_INLINE void split_taps_row(const S* weights, int64_t p, const Shape& s, T* row) {
  for (int64_t k = 0; k < s.KK; ++k) {
    for (int a = 0; a < 2; ++a) {
      T* even = row + ((2 * a) * s.KK + k) * s.Wl;
      T* odd = even + s.KK * s.Wl;
      std::fill(even, even + s.R, T(0));
      std::fill(odd, odd + s.R, T(0));
      row_pair::split_row<T, B>(weights + (k * 2 * s.H + 2 * p + a) * s.Wo, s, even + s.R, odd + s.R);
      std::fill(even + s.R + s.Wp, even + s.Wl, T(0));
      std::fill(odd + s.R + s.Wp, odd + s.Wl, T(0));
    }
  }
}

// Split taps of a row from the row kernels' per-child values taps[t][k][q], lines of taps_stride
// (row_pair.h; its values past q = W are not zero: a softmax of zero logits).
template <typename T>
UPBENCH_INLINE void copy_taps_to_split(const T* taps, int64_t taps_stride, const Shape& s, T* row) {
  for (int64_t line = 0; line < 4 * s.KK; ++line) {
    T* l = row + line * s.Wl;
    std::fill(l, l + s.R, T(0));
    std::memcpy(l + s.R, taps + line * taps_stride, s.W * sizeof(T));
    std::fill(l + s.R + s.W, l + s.Wl, T(0));
  }
}

constexpr int kChannelBlock = 4;  // channels per task of the adjoint

// Output rows per step of the adjoint. A parent row's child vector, once loaded, serves every output
// row of the step whose window holds that parent, and a tap vector every channel of the block: with
// Y rows and kChannelBlock channels, Y + kChannelBlock loads feed Y * kChannelBlock FMAs (one row at
// a time, 2 + 8 loads fed 8). AVX-512's 32 registers hold 5 x 4 accumulators (K = 5 in one step);
// 16 registers, 2 x 4.
template <int B>
constexpr int row_block() {
  return B >= 64 ? 5 : 2;
}
constexpr int kMaxRowBlock = 5;

// The children of parent rows of a block of kChannelBlock channels, split into parity lines:
// line(p, j, t) holds child t of parent row p of channel j at R + q, and line(p, j, t) =
// line(p, 0, 0) + (4j + t) * Wl. A ring of the K + Y - 1 parent rows one step of Y output rows reads,
// so each row of hi is split once as the output rows advance. Carved from the thread's zeroed scratch
// (thread_scratch.h): the lines' padding is never written and stays zero.
template <typename T>
struct Ring {
  T* lines;
  static int64_t rows(const Shape& s) { return s.K + kMaxRowBlock - 1; }
  static int64_t size(const Shape& s) { return rows(s) * kChannelBlock * 4 * s.Wl; }
  Ring(const Shape& s, Arena<T>& arena) : lines(arena.take(size(s))) {}
  T* line(const Shape& s, int64_t p, int64_t j, int t) {
    return lines + (((p % rows(s)) * kChannelBlock + j) * 4 + t) * s.Wl;
  }
};

// Parent row p of channels [c0, c0 + nc) of hi (C, 2H, 2W) into the ring.
template <typename T, int B, typename S>
UPBENCH_INLINE void split_parent(const S* hi, int64_t c0, int64_t nc, int64_t p, const Shape& s, Ring<T>& ring) {
  for (int64_t j = 0; j < nc; ++j) {
    for (int a = 0; a < 2; ++a) {
      const S* row = hi + ((c0 + j) * 2 * s.H + 2 * p + a) * s.Wo;
      row_pair::split_row<T, B>(row, s, ring.line(s, p, j, 2 * a) + s.R, ring.line(s, p, j, 2 * a + 1) + s.R);
    }
  }
}

// One parent row's share of a step: acc[i][j] += its taps for output row i of the step times its
// children in channel j, for the rows Lo..Hi whose window holds it (a contiguous range, known here at
// compile time so the accumulators stay in registers). `taps` points into row Lo's window row of the
// parent's split taps, lines[j] into channel j's child 0 (child t is t * child_stride further), both
// at the lanes' q = x + R, which window column kx = 0 reads. Window column kx reads q = x + R - kx:
// both loads shift by -kx, and past either end of the row both factors are zero padding (0 * 0).
template <typename T, int B, int Y, int Lo, int Hi>
UPBENCH_INLINE void parent_share(Vec<T, B> (&acc)[Y][kChannelBlock], const T* taps,
                                 const T* const (&lines)[kChannelBlock], int64_t child_stride, const Shape& s) {
  for (int t = 0; t < 4; ++t) {
    const T* w = taps + t * s.KK * s.Wl;
    for (int64_t kx = 0; kx < s.K; ++kx) {
      Vec<T, B> h[kChannelBlock];
      for (int j = 0; j < kChannelBlock; ++j) h[j] = load<T, B>(lines[j] + t * child_stride - kx);
      for (int i = Lo; i <= Hi; ++i) {
        const Vec<T, B> wi = load<T, B>(w + (i - Lo) * s.K * s.Wl + kx * (s.Wl - 1));
        for (int j = 0; j < kChannelBlock; ++j) acc[i][j] += wi * h[j];
      }
    }
  }
}

// parent_share for the rows lo..hi known at run time: a branch per parent row and step of lanes.
template <typename T, int B, int Y, int Lo = 0, int Hi = 0>
UPBENCH_INLINE void parent_share_rows(int lo, int hi, Vec<T, B> (&acc)[Y][kChannelBlock], const T* taps,
                                      const T* const (&lines)[kChannelBlock], int64_t child_stride, const Shape& s) {
  if constexpr (Lo < Y) {
    if constexpr (Hi < Y) {
      if (lo == Lo && hi == Hi) return parent_share<T, B, Y, Lo, Hi>(acc, taps, lines, child_stride, s);
      return parent_share_rows<T, B, Y, Lo, Hi + 1>(lo, hi, acc, taps, lines, child_stride, s);
    } else {
      return parent_share_rows<T, B, Y, Lo + 1, Lo + 1>(lo, hi, acc, taps, lines, child_stride, s);
    }
  }
}

// The adjoint for one image: rows [y0, y1) of channels [c0, c0 + nc) of out (C, H, W), from the
// image's split taps and hi (C, 2H, 2W); hi and out stored as T or narrower (row_pair.h).
template <typename T, int B, typename S>
UPBENCH_INLINE void scatter_block(const T* split, const S* hi, S* out, int64_t c0, int64_t nc, int64_t y0,
                                  int64_t y1, const Shape& s, Ring<T>& ring) {
  constexpr int L = lanes<T, B>();
  constexpr int NC = kChannelBlock;
  constexpr int Y = row_block<B>();
  int64_t next = std::max<int64_t>(0, y0 - s.R);  // the next parent row to split
  for (int64_t y = y0; y < y1; y += Y) {
    const int64_t rows = std::min<int64_t>(Y, y1 - y);
    const int64_t p_lo = std::max<int64_t>(0, y - s.R), p_hi = std::min(s.H - 1, y + rows - 1 + s.R);
    for (; next <= p_hi; ++next) split_parent<T, B>(hi, c0, nc, next, s, ring);
    // Up to W, not Wp: the split shape rounds Wp to the widest vectors, and a narrower body's vectors
    // past W would store a negative count of lanes.
    for (int64_t qb = 0; qb < s.W; qb += L) {
      Vec<T, B> acc[Y][NC] = {};
      for (int64_t p = p_lo; p <= p_hi; ++p) {
        // Rows y + lo .. y + hi hold parent p in their windows, row y + lo at window row y + lo - p + R.
        const int64_t lo = std::max(y, p - s.R) - y, hi_row = std::min(y + rows - 1, p + s.R) - y;
        const T* taps = split + (p * 4 * s.KK + (y + lo - p + s.R) * s.K) * s.Wl + qb + 2 * s.R;
        const T* lines[NC];  // channels past nc compute on stale lines and are not stored
        for (int j = 0; j < NC; ++j) lines[j] = ring.line(s, p, j, 0) + qb + 2 * s.R;
        parent_share_rows<T, B, Y>(static_cast<int>(lo), static_cast<int>(hi_row), acc, taps, lines, s.Wl, s);
      }
      const int64_t n = std::min<int64_t>(L, s.W - qb);
      for (int i = 0; i < Y; ++i) {  // unrolled, so the accumulators never go through memory
        if (i >= rows) break;
        for (int j = 0; j < NC; ++j) {
          if (j >= nc) break;
          simd::store_first<T, B>(out + ((c0 + j) * s.H + y + i) * s.W + qb, acc[i][j], n);
        }
      }
    }
  }
}

// The adjoint in push form, for a pass that has one parent row's children at a time (the fused SAPA
// backward, which splits them for its own use): parent row p's share of output rows [y_lo, y_hi]
// (each within R of p) is added to their partial sums, sums[((y % K) * C + c) * Wp + x]. `taps` is
// p's split taps, children[(t * C + c) * stride + q] its children with at least R zeros before and
// after each line (row_pair::Scratch).
template <typename T, int B>
UPBENCH_INLINE void push_parent(const T* taps, const T* children, int64_t stride, int64_t C, int64_t p,
                                int64_t y_lo, int64_t y_hi, const Shape& s, T* sums) {
  constexpr int L = lanes<T, B>();
  constexpr int NC = kChannelBlock;
  constexpr int Y = row_block<B>();
  for (int64_t c0 = 0; c0 < C; c0 += NC) {
    const int64_t nc = std::min<int64_t>(NC, C - c0);
    for (int64_t qb = 0; qb < s.W; qb += L) {
      const T* lines[NC];  // a channel past C repeats the last one; its sums are not stored
      for (int j = 0; j < NC; ++j) lines[j] = children + (c0 + std::min<int64_t>(j, nc - 1)) * stride + qb + s.R;
      for (int64_t y = y_lo; y <= y_hi; y += Y) {
        const int64_t rows = std::min<int64_t>(Y, y_hi + 1 - y);
        T* row_sums[Y];
        Vec<T, B> acc[Y][NC] = {};
        for (int i = 0; i < Y; ++i) {
          if (i >= rows) break;
          row_sums[i] = sums + ((y + i) % s.K * C + c0) * s.Wp + qb;
          for (int j = 0; j < NC; ++j) {
            if (j >= nc) break;
            acc[i][j] = load<T, B>(row_sums[i] + j * s.Wp);
          }
        }
        const T* row_taps = taps + (y - p + s.R) * s.K * s.Wl + qb + 2 * s.R;
        parent_share_rows<T, B, Y>(0, static_cast<int>(rows - 1), acc, row_taps, lines, C * stride, s);
        for (int i = 0; i < Y; ++i) {
          if (i >= rows) break;
          for (int j = 0; j < NC; ++j) {
            if (j >= nc) break;
            simd::store<T, B>(row_sums[i] + j * s.Wp, acc[i][j]);
          }
        }
      }
    }
  }
}

// Output row y's partial sums (push_parent), once every parent has added its share, to row y of
// out (C, H, W), and zeroed for the row that takes their place.
template <typename T, int B, typename S>
UPBENCH_INLINE void store_sums(T* sums, int64_t C, int64_t y, const Shape& s, S* out) {
  constexpr int L = lanes<T, B>();
  T* row = sums + y % s.K * C * s.Wp;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t qb = 0; qb < s.W; qb += L)
      simd::store_first<T, B>(out + (c * s.H + y) * s.W + qb, load<T, B>(row + c * s.Wp + qb),
                              std::min<int64_t>(L, s.W - qb));
  }
  std::fill(row, row + C * s.Wp, T(0));
}

}  // namespace window_adjoint
}  // namespace upbench
