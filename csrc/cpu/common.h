// Shared pieces of the CPU kernels: tiles, ISA variants, dtypes, deterministic groups.
//
// Kernels work on tiles of kLanes consecutive flat elements held as a few native SIMD vectors
// (GCC vector extensions, see simd.h). Each kernel body is a template over an ISA tag that fixes
// the vector width; it is compiled once per ISA and chosen at run time, so the wheel needs no
// -march flag and runs on any x86-64 (or aarch64, with the generic variant).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FQVAE_X86 1
#define FQVAE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

#define FQVAE_INLINE inline __attribute__((always_inline))

namespace fqvae::cpu {

constexpr int kLanes = 16;

// ----------------------------------------------------------------------------- ISA selection

struct Generic {  // SSE2 on x86-64, NEON on aarch64
  static constexpr int kBytes = 16;
};
#ifdef FQVAE_X86
struct Avx2 {  // AVX2 + FMA
  static constexpr int kBytes = 32;
};
#endif

// Whether to run the AVX2 variants: the CPU has AVX2 and FMA, and FQVAE_CPU_GENERIC (read once;
// lets tests cover the baseline variants on any machine) is unset or "0".
inline bool cpu_has_avx2() {
#ifdef FQVAE_X86
  static const bool ok = [] {
    const char* generic = std::getenv("FQVAE_CPU_GENERIC");
    const bool forced = generic != nullptr && generic[0] != '\0' && std::strcmp(generic, "0") != 0;
    return !forced && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
#else
  return false;
#endif
}

// FQVAE_ISA_KERNEL(name, body, Args) defines `name<S...>()`: a pointer to
// `void(const Args&, int64_t begin, int64_t end)` running `body<Isa, S...>` compiled for the best
// ISA this CPU has. `body` is a template whose first parameter is the ISA tag.
#ifdef FQVAE_X86
#define FQVAE_AVX2_VARIANT(name, body, Args)                                   \
  template <class... S>                                                      \
  FQVAE_TARGET_AVX2 void name##_avx2(const Args& a, int64_t b, int64_t e) {  \
    body<Avx2, S...>(a, b, e);                                               \
  }
#define FQVAE_PICK_ISA(name, S) (cpu_has_avx2() ? &name##_avx2<S> : &name##_generic<S>)
#else
#define FQVAE_AVX2_VARIANT(name, body, Args)
#define FQVAE_PICK_ISA(name, S) (&name##_generic<S>)
#endif

#define FQVAE_ISA_KERNEL(name, body, Args)                   \
  template <class... S>                                    \
  void name##_generic(const Args& a, int64_t b, int64_t e) { \
    body<Generic, S...>(a, b, e);                          \
  }                                                        \
  FQVAE_AVX2_VARIANT(name, body, Args)                     \
  template <class... S>                                    \
  auto name() {                                            \
    return FQVAE_PICK_ISA(name, S...);                     \
  }

// ----------------------------------------------------------------------------- dtypes

// Half-precision tensors are handled as their bit patterns (same layout as c10::Half/BFloat16).
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

// The accumulate type for a storage type: float, or double for double.
template <class S>
using Acc = std::conditional_t<std::is_same_v<S, double>, double, float>;

enum class IndexType { kU8, kI16, kI32, kI64 };

// base[at .. at + n) = src[0 .. n) converted to the index dtype.
FQVAE_INLINE void store_indices(void* base, IndexType type, int64_t at, const int32_t* src,
                                int n) {
  switch (type) {
    case IndexType::kU8:
      std::copy(src, src + n, static_cast<uint8_t*>(base) + at);
      break;
    case IndexType::kI16:
      std::copy(src, src + n, static_cast<int16_t*>(base) + at);
      break;
    case IndexType::kI32:
      std::copy(src, src + n, static_cast<int32_t*>(base) + at);
      break;
    case IndexType::kI64:
      std::copy(src, src + n, static_cast<int64_t*>(base) + at);
      break;
  }
}

// dst[0 .. n) = base[at .. at + n) as int32.
FQVAE_INLINE void load_indices(const void* base, IndexType type, int64_t at, int32_t* dst, int n) {
  switch (type) {
    case IndexType::kU8: {
      const auto* s = static_cast<const uint8_t*>(base) + at;
      std::copy(s, s + n, dst);
      break;
    }
    case IndexType::kI16: {
      const auto* s = static_cast<const int16_t*>(base) + at;
      std::copy(s, s + n, dst);
      break;
    }
    case IndexType::kI32: {
      const auto* s = static_cast<const int32_t*>(base) + at;
      std::copy(s, s + n, dst);
      break;
    }
    case IndexType::kI64: {
      const auto* s = static_cast<const int64_t*>(base) + at;
      for (int i = 0; i < n; ++i) dst[i] = static_cast<int32_t>(s[i]);
      break;
    }
  }
}

// ----------------------------------------------------------------------------- groups

// Reductions are split into groups of whole tiles whose number depends only on the problem
// size, never on the thread count; each group is summed sequentially and the per-group partials
// are combined in group order, so results are bitwise identical for any number of threads.
struct Groups {
  int64_t tiles;
  int64_t count;

  // `cells`: size of one group's partial result (doubles); keeps all partials under ~64 MB.
  Groups(int64_t n, int64_t cells) : tiles((n + kLanes - 1) / kLanes) {
    constexpr int64_t kMinTiles = 64, kMaxGroups = 256, kMaxCells = int64_t{1} << 23;
    const int64_t by_memory = std::max<int64_t>(1, kMaxCells / std::max<int64_t>(cells, 1));
    count = std::max<int64_t>(
        1, std::min({(tiles + kMinTiles - 1) / kMinTiles, kMaxGroups, by_memory}));
  }
  int64_t begin(int64_t g) const { return tiles * g / count; }
  int64_t end(int64_t g) const { return tiles * (g + 1) / count; }
};

}  // namespace fqvae::cpu
