// CPU kernels for the reflect window ops (FeatUp's JBU): K x K windows centred on each pixel of a map of
// the same size, the border being the map's mirror image (csrc/upbench_ops.cpp).
//
// Each task copies the rows it reads into its scratch, reflect-padded by R = K/2 on both sides and widened
// to the compute dtype, so the inner loops are branch-free vector loops along the row: the mirror is paid
// once per copied row, not once per tap. Rows are rounded up to whole vectors with zeros; the lanes past
// the row's end are computed on those zeros and never stored.
// * reflect_assembly: one band of output rows per task: its weight rows copied once, then each block of
//   channels padded and assembled, several output rows at a time.
// * reflect_similarity: one output row per task, over all channels. The K padded source rows it needs
//   are kept in a ring, so a thread's consecutive rows copy one new source row each.
// * the adjoint of the assembly in x (both backward ops need it): one block of channels per task; the
//   products are pushed into padded accumulator planes, whose mirrored border is then folded back into
//   the map. A thread owns its channels' planes: no atomics, and the same sums in the same order
//   whatever the thread count.
// float16 / bfloat16 are read and written in place, computed in float and rounded once on store, as
// the other window ops do (window_ops_cpu.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>

#include "../upbench_checks.h"
#include "dtypes.h"
#include "simd.h"
#include "thread_scratch.h"

namespace upbench {
namespace {

// Channels per task of the assembly and its adjoint: each weight vector loaded serves this many.
constexpr int64_t kChannelBlock = 4;
// Taps of one window row the similarity keeps in registers at once, where K is not specialised.
constexpr int kTapGroup = 4;

// The source index of padded index i of a map of n pixels (reflect padding: -1 -> 1, n -> n - 2).
inline int64_t mirror(int64_t i, int64_t n) {
  return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
}

// The problem: N maps of h x w, windows of K x K.
struct Dims {
  int64_t N, h, w, K;
};

// Its sizes, with those of the per-thread rows for vectors of `lanes` elements.
struct Geom {
  int64_t h, w, K, R, KK, hw;
  int64_t Wp;  // w rounded up to whole vectors: the length of the vector loops
  int64_t Pw;  // a padded row: Wp + 2R, plus the reads of a tap group past the window's last tap
  int64_t Ph;  // a padded plane's rows: h + 2R
  Geom(const Dims& d, int64_t lanes)
      : h(d.h), w(d.w), K(d.K), R(d.K / 2), KK(d.K * d.K), hw(d.h * d.w),
        Wp(ceil_div(d.w, lanes) * lanes), Pw(Wp + 2 * R + kTapGroup), Ph(d.h + 2 * R) {}
  int64_t plane() const { return Ph * Pw; }
};

// Scratch is sized for the widest vectors, whose rounding is the largest.
template <typename T>
Geom widest(const Dims& d) {
  return Geom(d, simd::lanes<T, 64>());
}

// dst[0, Pw) = src's row of w reflect-padded by R, widened to T, zero past w + 2R.
template <typename T, int B, typename S>
UPBENCH_INLINE void reflect_row(T* dst, const S* src, const Geom& g) {
  simd::copy<T, B>(dst + g.R, src, g.w);
  for (int64_t t = 1; t <= g.R; ++t) {
    dst[g.R - t] = dst[g.R + t];
    dst[g.R + g.w - 1 + t] = dst[g.R + g.w - 1 - t];
  }
  std::fill(dst + g.w + 2 * g.R, dst + g.Pw, T(0));
}

// Rows [y0 - R, y1 + R) of a plane of S (h x w), reflect-padded on every side, as padded rows of T.
template <typename T, int B, typename S>
UPBENCH_INLINE void reflect_band(T* dst, const S* plane, int64_t y0, int64_t y1, const Geom& g) {
  for (int64_t pr = 0; pr < y1 - y0 + 2 * g.R; ++pr)
    reflect_row<T, B>(dst + pr * g.Pw, plane + mirror(y0 + pr - g.R, g.h) * g.w, g);
}

// `count` rows of w elements, `stride` apart, readable as T for Wp elements each: in place where they
// already are (T storage, w a whole number of vectors), else copied into `scratch` with a zero tail.
template <typename T>
struct Rows {
  const T* base;
  int64_t stride;
  const T* row(int64_t i) const { return base + i * stride; }
};
template <typename T, int B, typename S, bool in_place = true>
UPBENCH_INLINE Rows<T> readable_rows(const S* first, int64_t count, int64_t stride, const Geom& g, T* scratch) {
  if constexpr (in_place && std::is_same_v<S, T>) {
    if (g.w == g.Wp) return {first, stride};
  }
  for (int64_t i = 0; i < count; ++i) {
    simd::copy<T, B>(scratch + i * g.Wp, first + i * stride, g.w);
    std::fill(scratch + i * g.Wp + g.w, scratch + (i + 1) * g.Wp, T(0));
  }
  return {scratch, g.Wp};
}

// The first `valid` (<= L) lanes of v to dst.
template <typename T, int B, typename S>
UPBENCH_INLINE void store_valid(S* dst, simd::Vec<T, B> v, int64_t valid) {
  if (valid == simd::lanes<T, B>())
    simd::store<T, B>(dst, v);
  else
    simd::store_first<T, B>(dst, v, valid);
}

// ---- reflect_assembly: out (N, C, h, w) = sum_k weights (N, KK, h, w) * x's reflected window k ----------

// One vector from column xv of Y output rows of channels [0, CB): `padded` is the padded row of the first
// output row's first window row (channels `band` elements apart), `weights` the K*K weight vectors of each
// of the Y rows at this column, one after another. A loaded vector of a padded row serves every output row
// whose window holds it, and each weight vector every channel: 1/Y + 1/CB loads per multiply-add. Each
// output sums its taps in order from zero (window row i = ii - yy ascending).
template <typename T, int B, int CB, int Y, typename S>
UPBENCH_INLINE void assemble_vector(const T* weights, const T* padded, int64_t band, S* out, int64_t xv,
                                    const Geom& g) {
  constexpr int L = simd::lanes<T, B>();
  using V = simd::Vec<T, B>;
  V acc[Y][CB] = {};
  for (int64_t ii = 0; ii < Y + g.K - 1; ++ii) {
    for (int64_t j = 0; j < g.K; ++j) {
      V source[CB];
      for (int cb = 0; cb < CB; ++cb) source[cb] = simd::load<T, B>(padded + cb * band + ii * g.Pw + xv + j);
      for (int yy = 0; yy < Y; ++yy) {  // unrolled: the accumulators stay in registers
        const int64_t i = ii - yy;
        if (i < 0 || i >= g.K) continue;
        const V wk = simd::load<T, B>(weights + (yy * g.KK + i * g.K + j) * L);
        for (int cb = 0; cb < CB; ++cb) acc[yy][cb] += wk * source[cb];
      }
    }
  }
  const int64_t valid = std::min<int64_t>(L, g.w - xv);
  for (int yy = 0; yy < Y; ++yy)
    for (int cb = 0; cb < CB; ++cb) store_valid<T, B>(out + cb * g.hw + yy * g.w + xv, acc[yy][cb], valid);
}

// Output rows this many at a time: AVX-512 has the registers for 4 x 4 accumulators, narrower sets for 2 x 4.
template <int B>
constexpr int kRowBlock = B >= 64 ? 4 : 2;

// Rows [y0, y1) of channels [0, CB) of `out` (image rows), from their padded band (rows y0 - R to y1 + R,
// channels `band` elements apart) and the band's weights as staged by stage_band_weights.
template <typename T, int B, int CB, typename S>
UPBENCH_INLINE void assemble_band(const T* weights, const T* padded, int64_t band, S* out, int64_t y0, int64_t y1,
                                  int64_t band_rows, const Geom& g) {
  constexpr int L = simd::lanes<T, B>();
  constexpr int Y = kRowBlock<B>;
  int64_t y = y0;
  const auto at = [&](int64_t row, int64_t xv) { return weights + ((xv / L * band_rows + row - y0) * g.KK) * L; };
  for (; y + Y <= y1; y += Y)
    for (int64_t xv = 0; xv < g.Wp; xv += L)
      assemble_vector<T, B, CB, Y>(at(y, xv), padded + (y - y0) * g.Pw, band, out + y * g.w, xv, g);
  for (; y < y1; ++y)
    for (int64_t xv = 0; xv < g.Wp; xv += L)
      assemble_vector<T, B, CB, 1>(at(y, xv), padded + (y - y0) * g.Pw, band, out + y * g.w, xv, g);
}

// The K*K weight rows of output rows [y0, y1) of one image, widened, as vectors grouped by column: those of
// column block xb, row y, tap k at ((xb * band_rows + y - y0) * KK + k) * L. Read in place, the rows (h * w
// apart, often a power of two) alias in the L1 cache and every weight load missed it; grouped, the
// Y * K*K vectors one output vector needs are one contiguous run.
template <typename T, int B, typename S>
UPBENCH_INLINE void stage_band_weights(const S* image_weights, int64_t y0, int64_t y1, int64_t band_rows,
                                       const Geom& g, T* staged) {
  constexpr int L = simd::lanes<T, B>();
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t k = 0; k < g.KK; ++k) {
      const S* row = image_weights + k * g.hw + y * g.w;
      for (int64_t xv = 0; xv < g.Wp; xv += L) {
        T* dst = staged + ((xv / L * band_rows + y - y0) * g.KK + k) * L;
        const int64_t valid = std::min<int64_t>(L, g.w - xv);
        simd::copy<T, B>(dst, row + xv, valid);
        std::fill(dst + valid, dst + L, T(0));
      }
    }
}

// Task = (image, band of output rows): the band's weights staged once, then each block of channels padded
// and assembled.
template <typename T, int B, typename S>
UPBENCH_INLINE void assembly_tasks(int64_t begin, int64_t end, Arena<T> arena, const S* weights, const S* x, S* out,
                                   Dims d, int64_t C, int64_t band_rows) {
  const Geom g(d, simd::lanes<T, B>());
  const int64_t band = (band_rows + 2 * g.R) * g.Pw;
  T* padded = arena.take(kChannelBlock * band);
  T* staged = arena.take(band_rows * g.KK * g.Wp);
  const int64_t bands = ceil_div(g.h, band_rows);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / bands, y0 = task % bands * band_rows, y1 = std::min(g.h, y0 + band_rows);
    stage_band_weights<T, B>(weights + n * g.KK * g.hw, y0, y1, band_rows, g, staged);
    for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
      const int64_t count = std::min(kChannelBlock, C - c0);
      for (int64_t cb = 0; cb < count; ++cb)
        reflect_band<T, B>(padded + cb * band, x + (n * C + c0 + cb) * g.hw, y0, y1, g);
      S* block_out = out + (n * C + c0) * g.hw;
      if (count == kChannelBlock) {
        assemble_band<T, B, kChannelBlock>(staged, padded, band, block_out, y0, y1, band_rows, g);
      } else {
        for (int64_t cb = 0; cb < count; ++cb)
          assemble_band<T, B, 1>(staged, padded + cb * band, band, block_out + cb * g.hw, y0, y1, band_rows, g);
      }
    }
  }
}
UPBENCH_PER_ISA(assembly_tasks)

// Bands of up to 16 rows (their weight rows, at K = 7 and w = 128, take 400 KB: L2); thinner ones, down to
// 4 rows, only where there are too few tasks for the threads. Each block of channels pads 2R rows more than
// the band. A band starts at a multiple of 4, so every row is summed in the same row block (assemble_band)
// whatever the thread count: a compiler may contract the blocked and the single-row bodies into FMAs
// differently (one GCC did, by one ulp), and the result must not depend on the threads.
template <typename T, typename S>
void assembly_nchw(const S* weights, const S* x, S* out, const Dims& d, int64_t C) {
  constexpr int64_t kBandRows = 16, kThinnestBand = kRowBlock<64>;
  static_assert(kThinnestBand % kRowBlock<32> == 0 && kThinnestBand % kRowBlock<16> == 0);
  const Geom g = widest<T>(d);
  const int64_t wanted = 4 * static_cast<int64_t>(at::get_num_threads());
  int64_t band_rows = kBandRows;
  while (band_rows > kThinnestBand && d.N * ceil_div(d.h, band_rows) < wanted) band_rows /= 2;
  band_rows = std::min(band_rows, d.h);
  parallel_with_scratch<T>(d.N * ceil_div(d.h, band_rows), grain_for(g.KK * band_rows * d.w * C),
                           kChannelBlock * (band_rows + 2 * g.R) * g.Pw + band_rows * g.KK * g.Wp,
                           [&](int64_t begin, int64_t end, Arena<T> arena) {
                             assembly_tasks_dispatch<T>(begin, end, arena, weights, x, out, d, C, band_rows);
                           });
}

// ---- reflect_similarity: out (N, KK, h, w) = <query (N, c, h, w), key's reflected window k> ------------

// Taps [j0, j0 + G) of window row i at output row y; G is K where K is specialised, else kTapGroup (the
// taps past K are computed on the padded row's slack and not stored).
template <typename T, int B, int G, typename S>
UPBENCH_INLINE void similarity_taps(Rows<T> query, const T* key_rows, int64_t i, int64_t j0, int64_t y, int64_t C,
                                    const Geom& g, S* out) {
  constexpr int L = simd::lanes<T, B>();
  using V = simd::Vec<T, B>;
  const int64_t taps = std::min<int64_t>(G, g.K - j0);
  for (int64_t xv = 0; xv < g.Wp; xv += L) {
    V acc[G] = {};
    for (int64_t c = 0; c < C; ++c) {
      const V q = simd::load<T, B>(query.row(c) + xv);
      const T* key_row = key_rows + c * g.Pw + xv + j0;
      for (int t = 0; t < G; ++t) acc[t] += q * simd::load<T, B>(key_row + t);
    }
    const int64_t valid = std::min<int64_t>(L, g.w - xv);
    for (int64_t t = 0; t < taps; ++t) store_valid<T, B>(out + (i * g.K + j0 + t) * g.hw + y * g.w + xv, acc[t], valid);
  }
}

template <typename T, int B, int G, typename S>
UPBENCH_INLINE void similarity_row(Rows<T> query, const T* ring, int64_t y, int64_t C, const Geom& g, S* out) {
  for (int64_t i = 0; i < g.K; ++i) {
    const T* key_rows = ring + (y + i) % g.K * C * g.Pw;  // padded row y + i, all channels
    for (int64_t j0 = 0; j0 < g.K; j0 += G) similarity_taps<T, B, G>(query, key_rows, i, j0, y, C, g, out);
  }
}

// Task = (image, output row). The ring holds padded key rows [first, next) of image ring_n, the last K of
// them at slots (padded row) % K, every channel's row of a padded row side by side.
template <typename T, int B, typename S>
UPBENCH_INLINE void similarity_tasks(int64_t begin, int64_t end, Arena<T> arena, const S* query, const S* key, S* out,
                                     Dims d, int64_t C) {
  const Geom g(d, simd::lanes<T, B>());
  T* ring = arena.take(g.K * C * g.Pw);
  T* query_rows = arena.take(C * g.Wp);
  int64_t ring_n = -1, first = 0, next = 0;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / g.h, y = task % g.h;
    if (n != ring_n || y < std::max(first, next - g.K) || y > next) {
      ring_n = n;
      first = next = y;
    }
    for (; next < y + g.K; ++next) {
      T* slot = ring + next % g.K * C * g.Pw;
      const S* source = key + n * C * g.hw + mirror(next - g.R, g.h) * g.w;
      for (int64_t c = 0; c < C; ++c) reflect_row<T, B>(slot + c * g.Pw, source + c * g.hw, g);
    }
    // copied, not read in place: C rows h * w apart would alias in the L1 cache
    const Rows<T> q = readable_rows<T, B, S, false>(query + n * C * g.hw + y * g.w, C, g.hw, g, query_rows);
    S* image_out = out + n * g.KK * g.hw;
    switch (g.K) {
      case 1: similarity_row<T, B, 1>(q, ring, y, C, g, image_out); break;
      case 3: similarity_row<T, B, 3>(q, ring, y, C, g, image_out); break;
      case 5: similarity_row<T, B, 5>(q, ring, y, C, g, image_out); break;
      case 7: similarity_row<T, B, 7>(q, ring, y, C, g, image_out); break;
      default: similarity_row<T, B, kTapGroup>(q, ring, y, C, g, image_out);
    }
  }
}
UPBENCH_PER_ISA(similarity_tasks)

template <typename T, typename S>
void similarity_nchw(const S* query, const S* key, S* out, const Dims& d, int64_t C) {
  const Geom g = widest<T>(d);
  parallel_with_scratch<T>(d.N * d.h, grain_for(g.KK * d.w * C), g.K * C * g.Pw + C * g.Wp,
                           [&](int64_t begin, int64_t end, Arena<T> arena) {
                             similarity_tasks_dispatch<T>(begin, end, arena, query, key, out, d, C);
                           });
}

// ---- the adjoint of reflect_assembly in x: out (N, C, h, w) from weights (N, KK, h, w), g (N, C, h, w) --

// Folds a padded plane's mirrored border back into the map it mirrors: padded column R - t is column t,
// R + w - 1 + t is column w - 1 - t, and likewise for the rows.
template <typename T>
UPBENCH_INLINE void fold_border(T* plane, const Geom& g) {
  for (int64_t pr = 0; pr < g.Ph; ++pr) {
    T* row = plane + pr * g.Pw;
    for (int64_t t = 1; t <= g.R; ++t) {
      row[g.R + t] += row[g.R - t];
      row[g.R + g.w - 1 - t] += row[g.R + g.w - 1 + t];
    }
  }
  for (int64_t t = 1; t <= g.R; ++t) {
    const T* top = plane + (g.R - t) * g.Pw;
    const T* bottom = plane + (g.R + g.h - 1 + t) * g.Pw;
    T* top_target = plane + (g.R + t) * g.Pw;
    T* bottom_target = plane + (g.R + g.h - 1 - t) * g.Pw;
    for (int64_t c = g.R; c < g.R + g.w; ++c) {
      top_target[c] += top[c];
      bottom_target[c] += bottom[c];
    }
  }
}

template <typename T, int B, typename S>
UPBENCH_INLINE void adjoint_tasks(int64_t begin, int64_t end, Arena<T> arena, const S* weights, const S* grad, S* out,
                                  Dims d, int64_t C) {
  constexpr int L = simd::lanes<T, B>();
  const Geom g(d, L);
  T* planes = arena.take(kChannelBlock * g.plane());
  T* weight_rows = arena.take(g.KK * g.Wp);
  T* grad_rows = arena.take(kChannelBlock * g.Wp);
  const int64_t blocks = ceil_div(C, kChannelBlock);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / blocks, c0 = task % blocks * kChannelBlock;
    const int64_t count = std::min(kChannelBlock, C - c0);
    std::fill(planes, planes + count * g.plane(), T(0));
    for (int64_t y = 0; y < g.h; ++y) {
      const Rows<T> w = readable_rows<T, B>(weights + n * g.KK * g.hw + y * g.w, g.KK, g.hw, g, weight_rows);
      const Rows<T> gr = readable_rows<T, B>(grad + (n * C + c0) * g.hw + y * g.w, count, g.hw, g, grad_rows);
      // Pixel (y, x) pushes w_k * g to padded (y + i, x + j). The loop runs along the row innermost, so
      // no vector is read back while the store just before it, one tap over, is in flight.
      for (int64_t i = 0; i < g.K; ++i) {
        for (int64_t j = 0; j < g.K; ++j) {
          const T* wk = w.row(i * g.K + j);
          for (int64_t cb = 0; cb < count; ++cb) {
            T* target = planes + cb * g.plane() + (y + i) * g.Pw + j;
            const T* gc = gr.row(cb);
            for (int64_t xv = 0; xv < g.Wp; xv += L)
              simd::store<T, B>(target + xv, simd::load<T, B>(target + xv) +
                                                 simd::load<T, B>(wk + xv) * simd::load<T, B>(gc + xv));
          }
        }
      }
    }
    for (int64_t cb = 0; cb < count; ++cb) {
      T* plane = planes + cb * g.plane();
      fold_border(plane, g);
      S* channel_out = out + (n * C + c0 + cb) * g.hw;
      for (int64_t y = 0; y < g.h; ++y) {
        const T* row = plane + (g.R + y) * g.Pw + g.R;
        for (int64_t xv = 0; xv < g.Wp; xv += L)
          store_valid<T, B>(channel_out + y * g.w + xv, simd::load<T, B>(row + xv), std::min<int64_t>(L, g.w - xv));
      }
    }
  }
}
UPBENCH_PER_ISA(adjoint_tasks)

template <typename T, typename S>
void adjoint_nchw(const S* weights, const S* grad, S* out, const Dims& d, int64_t C) {
  const Geom g = widest<T>(d);
  parallel_with_scratch<T>(d.N * ceil_div(C, kChannelBlock), grain_for(g.KK * g.hw * kChannelBlock),
                           kChannelBlock * g.plane() + g.KK * g.Wp + kChannelBlock * g.Wp,
                           [&](int64_t begin, int64_t end, Arena<T> arena) {
                             adjoint_tasks_dispatch<T>(begin, end, arena, weights, grad, out, d, C);
                           });
}

// ---- op entry points: every map in its own dtype (contiguous), computed in compute_type's -------------

Dims dims_of(const at::Tensor& map, int64_t K) {
  return {map.size(0), map.size(2), map.size(3), K};
}

at::Tensor reflect_similarity_cpu(const at::Tensor& query_, const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::reflect_similarity";
  check_reflect_similarity(op, query_, key_, K);
  check_cpu_dtype(op, key_);
  const at::Tensor query = query_.contiguous(), key = key_.contiguous();
  const Dims d = dims_of(key, K);
  at::Tensor out = at::empty({d.N, K * K, d.h, d.w}, key.options());
  UPBENCH_DISPATCH_CPU_DTYPES(key.scalar_type(), op, [&] {
    similarity_nchw<compute_t<scalar_t>>(query.data_ptr<scalar_t>(), key.data_ptr<scalar_t>(),
                                         out.data_ptr<scalar_t>(), d, key.size(1));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> reflect_similarity_backward_cpu(const at::Tensor& grad_, const at::Tensor& query_,
                                                                   const at::Tensor& key_, int64_t K) {
  constexpr const char* op = "upbench::reflect_similarity_backward";
  check_reflect_similarity(op, query_, key_, K);
  check_cpu_dtype(op, key_);
  const Dims d = dims_of(key_, K);
  check_grad(op, grad_, {d.N, K * K, d.h, d.w}, key_);
  const at::Tensor grad = grad_.contiguous(), query = query_.contiguous(), key = key_.contiguous();
  at::Tensor grad_query = at::empty(query.sizes(), query.options());
  at::Tensor grad_key = at::empty(key.sizes(), key.options());
  // d/dquery = reflect_assembly(grad, key); d/dkey = the assembly's adjoint of (grad, query).
  UPBENCH_DISPATCH_CPU_DTYPES(key.scalar_type(), op, [&] {
    using T = compute_t<scalar_t>;
    assembly_nchw<T>(grad.data_ptr<scalar_t>(), key.data_ptr<scalar_t>(), grad_query.data_ptr<scalar_t>(), d,
                     key.size(1));
    adjoint_nchw<T>(grad.data_ptr<scalar_t>(), query.data_ptr<scalar_t>(), grad_key.data_ptr<scalar_t>(), d,
                    key.size(1));
  });
  return {grad_query, grad_key};
}

at::Tensor reflect_assembly_cpu(const at::Tensor& weights_, const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::reflect_assembly";
  check_reflect_assembly(op, weights_, x_, K);
  check_cpu_dtype(op, x_);
  const at::Tensor weights = weights_.contiguous(), x = x_.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  UPBENCH_DISPATCH_CPU_DTYPES(x.scalar_type(), op, [&] {
    assembly_nchw<compute_t<scalar_t>>(weights.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                                       out.data_ptr<scalar_t>(), dims_of(x, K), x.size(1));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> reflect_assembly_backward_cpu(const at::Tensor& grad_, const at::Tensor& weights_,
                                                                 const at::Tensor& x_, int64_t K) {
  constexpr const char* op = "upbench::reflect_assembly_backward";
  check_reflect_assembly(op, weights_, x_, K);
  check_cpu_dtype(op, x_);
  check_grad(op, grad_, x_.sizes(), x_);
  const at::Tensor grad = grad_.contiguous(), weights = weights_.contiguous(), x = x_.contiguous();
  at::Tensor grad_weights = at::empty(weights.sizes(), weights.options());
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  // d/dweights = reflect_similarity(grad, x); d/dx = the assembly's adjoint of (weights, grad).
  UPBENCH_DISPATCH_CPU_DTYPES(x.scalar_type(), op, [&] {
    using T = compute_t<scalar_t>;
    const Dims d = dims_of(x, K);
    similarity_nchw<T>(grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), d,
                       x.size(1));
    adjoint_nchw<T>(weights.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), d,
                    x.size(1));
  });
  return {grad_weights, grad_x};
}

}  // namespace

TORCH_LIBRARY_IMPL(upbench, CPU, m) {
  m.impl("reflect_similarity", &reflect_similarity_cpu);
  m.impl("reflect_similarity_backward", &reflect_similarity_backward_cpu);
  m.impl("reflect_assembly", &reflect_assembly_cpu);
  m.impl("reflect_assembly_backward", &reflect_assembly_backward_cpu);
}

}  // namespace upbench
