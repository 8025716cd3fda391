// Explicit SIMD for the CPU kernels: GNU vector types of a chosen width, the few operations the
// kernels need (load, store, streaming store, broadcast, interleave, exp), and a run-time choice of
// instruction set. Loads and stores also convert between float vectors and float16 / bfloat16 memory,
// so the kernels read and write those dtypes where they are and compute in float.
//
// Why not at::vec: its width is fixed when the extension is compiled (the JIT build passes no -m
// flags, so it would be the generic scalar fallback). Here every kernel body is a template on the
// vector width, instantiated inside a function compiled for AVX-512 (64-byte vectors), for AVX2 + FMA
// (32-byte vectors) and for the baseline (16-byte vectors); cpu_isa() picks one at run time.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#if defined(__GNUC__) || defined(__clang__)
#define UPBENCH_INLINE inline __attribute__((always_inline))
#else
#error "the upbench CPU kernels need GCC or Clang (GNU vector extensions)"
#endif

// Kernel bodies are always-inline templates; only these wrappers carry a target. Helpers must be
// inlined into them to be compiled for that target, lambdas included.
#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define UPBENCH_X86_DISPATCH 1
#define UPBENCH_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#define UPBENCH_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#endif

namespace upbench {
namespace simd {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The best instruction set this CPU runs, decided once. UPBENCH_CPU_ISA=avx2 or =baseline caps it
// (never above what the CPU runs), so the tests can run the bodies a newer CPU would not pick.
inline Isa cpu_isa() {
#ifdef UPBENCH_X86_DISPATCH
  static const Isa isa = [] {
    __builtin_cpu_init();
    Isa best = Isa::kBaseline;
    if (__builtin_cpu_supports("x86-64-v4"))
      best = Isa::kAvx512;
    else if (__builtin_cpu_supports("x86-64-v3"))
      best = Isa::kAvx2;
    const char* cap = std::getenv("UPBENCH_CPU_ISA");
    if (cap && std::strcmp(cap, "baseline") == 0) return Isa::kBaseline;
    if (cap && std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) return Isa::kAvx2;
    return best;
  }();
  return isa;
#else
  return Isa::kBaseline;
#endif
}

template <typename T, int Bytes>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
};
template <typename T, int Bytes>
using Vec = typename VecOf<T, Bytes>::type;

template <typename T, int B>
constexpr int lanes() {
  return B / static_cast<int>(sizeof(T));
}

// ---- float16 / bfloat16 in memory, float in registers --------------------------------------------
//
// A vector of L floats is stored as L 16-bit values (B / 2 bytes). Widening is exact; narrowing rounds
// to nearest even, as torch's own conversions do, so a kernel that widens on load and narrows on store
// gives bit for bit what computing on a float32 copy and rounding the result would (NaN payloads aside).
// F16C's conversions are inline assembly, as stream() is: GCC will not inline an intrinsic into a
// template without the target attribute, and B says which instruction set the body is compiled for
// (32: AVX2 + F16C, 64: AVX-512); the baseline converts lane by lane.

template <typename S>
constexpr bool is_half_storage = std::is_same_v<S, c10::Half> || std::is_same_v<S, c10::BFloat16>;

namespace detail {
template <int B>
using Bits = Vec<uint16_t, B / 2>;  // the 16-bit storage of a float vector of B bytes

template <typename S, int B>
UPBENCH_INLINE Vec<float, B> widen(Bits<B> h) {
  Vec<float, B> v;
  if constexpr (std::is_same_v<S, c10::BFloat16>) {  // bfloat16 is the top half of a float
    const Vec<uint32_t, B> bits = __builtin_convertvector(h, Vec<uint32_t, B>) << 16;
    std::memcpy(&v, &bits, sizeof(v));
#if defined(__x86_64__)
  } else if constexpr (B == 64 || B == 32) {
    asm("vcvtph2ps %1, %0" : "=v"(v) : "v"(h));
#endif
  } else {
    for (int l = 0; l < lanes<float, B>(); ++l) v[l] = static_cast<float>(c10::Half(h[l], c10::Half::from_bits()));
  }
  return v;
}

template <typename S, int B>
UPBENCH_INLINE Bits<B> narrow(Vec<float, B> v) {
  Bits<B> h;
  if constexpr (std::is_same_v<S, c10::BFloat16>) {
    // c10::BFloat16's round to nearest even on the bits, and its quiet NaN
    using U = Vec<uint32_t, B>;
    U bits;
    std::memcpy(&bits, &v, sizeof(bits));
    U rounded = (bits + (((bits >> 16) & 1) + 0x7fffu)) >> 16;
    rounded = v != v ? U{} + 0x7fc0u : rounded;
    h = __builtin_convertvector(rounded, Bits<B>);
#if defined(__x86_64__)
  } else if constexpr (B == 64 || B == 32) {
    asm("vcvtps2ph $0, %1, %0" : "=v"(h) : "v"(v));  // immediate 0: round to nearest even
#endif
  } else {
    for (int l = 0; l < lanes<float, B>(); ++l) h[l] = c10::Half(v[l]).x;
  }
  return h;
}
}  // namespace detail

// A vector of T from p, which holds T or, for T = float, float16 / bfloat16 (S).
template <typename T, int B, typename S>
UPBENCH_INLINE Vec<T, B> load(const S* p) {
  if constexpr (is_half_storage<S>) {
    static_assert(std::is_same_v<T, float>, "float16 / bfloat16 are computed in float");
    detail::Bits<B> h;
    std::memcpy(&h, p, sizeof(h));
    return detail::widen<S, B>(h);
  } else {
    static_assert(std::is_same_v<S, T>);
    Vec<T, B> v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
}

// v to p, which holds T or, for T = float, float16 / bfloat16 (rounded to nearest even).
template <typename T, int B, typename S>
UPBENCH_INLINE void store(S* p, Vec<T, B> v) {
  if constexpr (is_half_storage<S>) {
    static_assert(std::is_same_v<T, float>, "float16 / bfloat16 are computed in float");
    const detail::Bits<B> h = detail::narrow<S, B>(v);
    std::memcpy(p, &h, sizeof(h));
  } else {
    static_assert(std::is_same_v<S, T>);
    std::memcpy(p, &v, sizeof(v));
  }
}

// The first n (< lanes) elements of v.
template <typename T, int B, typename S>
UPBENCH_INLINE void store_first(S* p, Vec<T, B> v, int64_t n) {
  if constexpr (is_half_storage<S>) {
    static_assert(std::is_same_v<T, float>, "float16 / bfloat16 are computed in float");
    const detail::Bits<B> h = detail::narrow<S, B>(v);
    std::memcpy(p, &h, n * sizeof(S));
  } else {
    static_assert(std::is_same_v<S, T>);
    std::memcpy(p, &v, n * sizeof(T));
  }
}

// dst[i] = src[i] for i < n, widened to T where src holds float16 / bfloat16.
template <typename T, int B, typename S>
UPBENCH_INLINE void copy(T* dst, const S* src, int64_t n) {
  if constexpr (std::is_same_v<S, T>) {
    std::memcpy(dst, src, n * sizeof(T));
  } else {
    constexpr int L = lanes<T, B>();
    int64_t i = 0;
    for (; i + L <= n; i += L) store<T, B>(dst + i, load<T, B>(src + i));
    for (; i < n; ++i) dst[i] = static_cast<T>(src[i]);
  }
}

// store() to p, which is aligned to the vector's size, past the caches where the instruction set has
// such a store: for a large output written once, it saves reading every line from memory before it is
// overwritten. The stores are weakly ordered: the writing thread calls stream_fence() when done.
template <typename T, int B>
UPBENCH_INLINE void stream(T* p, Vec<T, B> v) {
#if defined(__x86_64__)
  struct alignas(B) Line {
    unsigned char bytes[B];
  };
  Line& line = *reinterpret_cast<Line*>(p);
  if constexpr (B == 64 || B == 32) {
    asm volatile("vmovntps %1, %0" : "=m"(line) : "v"(v));
    return;
  } else if constexpr (B == 16) {
    asm volatile("movntps %1, %0" : "=m"(line) : "x"(v));
    return;
  }
#endif
  store<T, B>(p, v);
}

UPBENCH_INLINE void stream_fence() {
#if defined(__x86_64__)
  asm volatile("sfence" ::: "memory");
#endif
}

template <typename T, int B>
UPBENCH_INLINE Vec<T, B> broadcast(T x) {
  return Vec<T, B>{} + x;
}

template <typename T, int B>
UPBENCH_INLINE Vec<T, B> vmax(Vec<T, B> a, Vec<T, B> b) {
  return a > b ? a : b;  // NaN in b (where a > b is false) propagates
}

namespace detail {
template <int L, std::size_t... I>
constexpr int interleave_index(std::size_t i, bool high) {
  // lane i of zip(a, b)'s low (or high) half: a[j] at even i, b[j] at odd i
  return static_cast<int>((high ? L / 2 : 0) + i / 2 + (i % 2 ? L : 0));
}
template <typename V, int L, std::size_t... I>
UPBENCH_INLINE V zip_low(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, interleave_index<L>(I, false)...);
}
template <typename V, int L, std::size_t... I>
UPBENCH_INLINE V zip_high(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, interleave_index<L>(I, true)...);
}
template <typename V, std::size_t... I>
UPBENCH_INLINE V pick_even(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>(2 * I)...);
}
template <typename V, std::size_t... I>
UPBENCH_INLINE V pick_odd(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>(2 * I + 1)...);
}
}  // namespace detail

// (a0 b0 a1 b1 ...): the first and second halves of the interleaving of a and b.
template <typename T, int B>
UPBENCH_INLINE void zip(Vec<T, B> a, Vec<T, B> b, Vec<T, B>& low, Vec<T, B>& high) {
  constexpr int L = lanes<T, B>();
  low = detail::zip_low<Vec<T, B>, L>(a, b, std::make_index_sequence<L>());
  high = detail::zip_high<Vec<T, B>, L>(a, b, std::make_index_sequence<L>());
}

// Inverse of zip: the even and the odd elements of the 2L elements (lo, hi).
template <typename T, int B>
UPBENCH_INLINE void unzip(Vec<T, B> lo, Vec<T, B> hi, Vec<T, B>& even, Vec<T, B>& odd) {
  constexpr int L = lanes<T, B>();
  even = detail::pick_even(lo, hi, std::make_index_sequence<L>());
  odd = detail::pick_odd(lo, hi, std::make_index_sequence<L>());
}

// exp of x <= 0 (softmax logits minus their maximum), lane by lane. float: a Cephes-style range
// reduction and degree-6 polynomial, within 2 ulp of expf on that range; below log(FLT_MIN) it returns
// 0, and NaN stays NaN. double: libm's exp per lane (double is the verification dtype, not the fast one).
template <typename T, int B>
UPBENCH_INLINE Vec<T, B> exp_nonpositive(Vec<T, B> x) {
  if constexpr (sizeof(T) == 8) {
    Vec<T, B> r;
    for (int l = 0; l < lanes<T, B>(); ++l) r[l] = std::exp(x[l]);
    return r;
  } else {
    using I = Vec<int32_t, B>;
    const Vec<T, B> lowest = broadcast<T, B>(-87.33654475f);  // log(FLT_MIN): 2^n stays normal above it
    const Vec<T, B> xc = x < lowest ? lowest : x;
    // n = round(x / ln 2); r = x - n ln 2 in two parts, so r is exact to float precision
    Vec<T, B> fx = xc * 1.44269504088896341f + 0.5f;
    Vec<T, B> n = __builtin_convertvector(__builtin_convertvector(fx, I), Vec<T, B>);
    n = n > fx ? n - 1.0f : n;  // floor for negative fx
    const Vec<T, B> r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    Vec<T, B> p = broadcast<T, B>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const I bits = (__builtin_convertvector(n, I) + 127) << 23;  // 2^n, n in [-126, 0]
    Vec<T, B> scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    const Vec<T, B> result = p * scale;
    return x < lowest ? Vec<T, B>{} : result;  // NaN x: the comparison is false, NaN propagates
  }
}

}  // namespace simd
}  // namespace upbench

// Defines NAME_dispatch<T>(args...), which calls NAME<T, vector bytes>(args...) compiled for the best
// instruction set this CPU runs. NAME must be an always-inline template <typename T, int B>.
#ifdef UPBENCH_X86_DISPATCH
#define UPBENCH_PER_ISA(NAME)                                                   \
  template <typename T, typename... Args>                                       \
  UPBENCH_TARGET_AVX512 void NAME##_avx512(Args... args) {                      \
    NAME<T, 64>(args...);                                                       \
  }                                                                             \
  template <typename T, typename... Args>                                       \
  UPBENCH_TARGET_AVX2 void NAME##_avx2(Args... args) {                          \
    NAME<T, 32>(args...);                                                       \
  }                                                                             \
  template <typename T, typename... Args>                                       \
  void NAME##_baseline(Args... args) {                                          \
    NAME<T, 16>(args...);                                                       \
  }                                                                             \
  template <typename T, typename... Args>                                       \
  void NAME##_dispatch(Args... args) {                                          \
    switch (::upbench::simd::cpu_isa()) {                                       \
      case ::upbench::simd::Isa::kAvx512: return NAME##_avx512<T>(args...);     \
      case ::upbench::simd::Isa::kAvx2: return NAME##_avx2<T>(args...);         \
      default: return NAME##_baseline<T>(args...);                              \
    }                                                                           \
  }
#else
#define UPBENCH_PER_ISA(NAME)              \
  template <typename T, typename... Args> \
  void NAME##_dispatch(Args... args) {    \
    NAME<T, 16>(args...);                 \
  }
#endif
