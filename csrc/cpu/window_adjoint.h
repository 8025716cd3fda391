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

constexpr int kChannelBlock = 4;  // channels per task of the adjoint: 4 x 2 accumulators, 8 FMA chains

// The children of parent rows of a block of kChannelBlock channels, split into parity lines:
// line(p, j, t) holds child t of parent row p of channel j at R + q, and line(p, j, t) =
// line(p, 0, 0) + (4j + t) * Wl. A ring of K parent rows, so each row of hi is split once as the
// output row advances. Carved from the thread's zeroed scratch (thread_scratch.h): the lines'
// padding is never written and stays zero.
template <typename T>
struct Ring {
  T* lines;
  static int64_t size(const Shape& s) { return s.K * kChannelBlock * 4 * s.Wl; }
  Ring(const Shape& s, Arena<T>& arena) : lines(arena.take(size(s))) {}
  T* line(const Shape& s, int64_t p, int64_t j, int t) {
    return lines + (((p % s.K) * kChannelBlock + j) * 4 + t) * s.Wl;
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

// The adjoint for one image: rows [y0, y1) of channels [c0, c0 + nc) of out (C, H, W), from the
// image's split taps and hi (C, 2H, 2W); hi and out stored as T or narrower (row_pair.h).
template <typename T, int B, typename S>
UPBENCH_INLINE void scatter_block(const T* split, const S* hi, S* out, int64_t c0, int64_t nc, int64_t y0,
                                  int64_t y1, const Shape& s, Ring<T>& ring) {
  constexpr int L = lanes<T, B>();
  constexpr int NC = kChannelBlock;
  for (int64_t p = std::max<int64_t>(0, y0 - s.R); p < std::min(s.H, y0 + s.R); ++p)
    split_parent<T, B>(hi, c0, nc, p, s, ring);
  for (int64_t y = y0; y < y1; ++y) {
    if (y + s.R < s.H) split_parent<T, B>(hi, c0, nc, y + s.R, s, ring);
    const int64_t p_lo = std::max<int64_t>(0, y - s.R), p_hi = std::min(s.H - 1, y + s.R);
    // Up to W, not Wp: the split shape rounds Wp to the widest vectors, and a narrower body's vectors
    // past W would store a negative count of lanes.
    for (int64_t qb = 0; qb < s.W; qb += L) {
      Vec<T, B> acc[NC][2] = {};
      for (int64_t p = p_lo; p <= p_hi; ++p) {
        // Window column kx reads the parents q = x + R - kx, at line index x + 2R - kx. Running
        // pointers and loop-invariant strides keep every address in a register.
        const T* taps = split + (p * 4 * s.KK + (y - p + s.R) * s.K) * s.Wl + qb + 2 * s.R;  // window row y - p + R
        const T* lines = ring.line(s, p, 0, 0) + qb + 2 * s.R;
        for (int t = 0; t < 4; t += 2) {  // two children at a time: one accumulator each
          const T* w0 = taps + t * s.KK * s.Wl;
          const T* w1 = w0 + s.KK * s.Wl;
          const T* g0 = lines + t * s.Wl;
          const T* g1 = g0 + s.Wl;
          for (int64_t kx = 0; kx < s.K; ++kx) {
            const Vec<T, B> wa = load<T, B>(w0 + kx * (s.Wl - 1)), wb = load<T, B>(w1 + kx * (s.Wl - 1));
            for (int j = 0; j < NC; ++j) {  // channels past nc compute on stale lines and are not stored
              acc[j][0] += wa * load<T, B>(g0 + 4 * j * s.Wl - kx);
              acc[j][1] += wb * load<T, B>(g1 + 4 * j * s.Wl - kx);
            }
          }
        }
      }
      const int64_t n = std::min<int64_t>(L, s.W - qb);
      for (int j = 0; j < NC; ++j) {  // unrolled, so the accumulators never go through memory
        if (j >= nc) break;
        simd::store_first<T, B>(out + ((c0 + j) * s.H + y) * s.W + qb, acc[j][0] + acc[j][1], n);
      }
    }
  }
}

}  // namespace window_adjoint
}  // namespace upbench
