// The shared random stream, per-column batch permutations, and the permute gather / scatter.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "glue.h"
#include "ops.h"
#include "random.h"

namespace fqvae::cpu {
namespace {

// emit(col, random_u32(row, col)) for col in [0, cols), kLanes Philox counters at a time.
template <class Isa, class Emit>
FQVAE_INLINE void stream_row(uint64_t row, int64_t cols, uint64_t seed, uint32_t offset,
                             Emit&& emit) {
  Counters c;
  Words w;
  const int64_t groups = (cols + 3) / 4;
  for (int64_t g0 = 0; g0 < groups; g0 += kLanes) {
    counters_for_groups(c, row, static_cast<uint32_t>(g0), offset);
    philox_lanes(Isa{}, c, seed, w);
    const int64_t col0 = 4 * g0;
    if (col0 + 4 * kLanes <= cols) {
      for (int i = 0; i < kLanes; ++i) {
        for (int j = 0; j < 4; ++j) emit(col0 + 4 * i + j, w[j][i]);
      }
    } else {
      for (int64_t col = col0; col < cols; ++col) emit(col, w[(col - col0) % 4][(col - col0) / 4]);
    }
  }
}

struct StreamArgs {
  int64_t cols;
  uint64_t seed;
  uint32_t offset;
  void* out;  // random_bits: (rows, cols) int64; permutations: (B, L) int64 with L = rows
  int64_t out_cols;
};

// Rows [begin, end) of the stream as int64.
template <class Isa>
FQVAE_INLINE void bits_body(const StreamArgs& a, int64_t begin, int64_t end) {
  auto* out = static_cast<int64_t*>(a.out);
  for (int64_t r = begin; r < end; ++r) {
    int64_t* dst = out + r * a.cols;
    stream_row<Isa>(static_cast<uint64_t>(r), a.cols, a.seed, a.offset,
                    [&](int64_t col, uint32_t v) { dst[col] = v; });
  }
}

// Columns l in [begin, end): perm[:, l] = stable argsort of random_u32(l, b) over b < B.
template <class Isa>
FQVAE_INLINE void perm_body(const StreamArgs& a, int64_t begin, int64_t end) {
  auto* perm = static_cast<int64_t*>(a.out);
  std::vector<uint64_t> keys(static_cast<size_t>(a.cols));
  for (int64_t l = begin; l < end; ++l) {
    // (key << 32) | b sorts by key, then by b: a stable sort of the keys
    stream_row<Isa>(static_cast<uint64_t>(l), a.cols, a.seed, a.offset, [&](int64_t b, uint32_t v) {
      keys[b] = (static_cast<uint64_t>(v) << 32) | static_cast<uint64_t>(b);
    });
    std::sort(keys.begin(), keys.end());
    for (int64_t b = 0; b < a.cols; ++b) {
      perm[b * a.out_cols + l] = static_cast<int64_t>(keys[b] & 0xffffffffu);
    }
  }
}

FQVAE_ISA_KERNEL(bits_kernel, bits_body, StreamArgs)
FQVAE_ISA_KERNEL(perm_kernel, perm_body, StreamArgs)

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(work_per_item, 1));
}

// Copies `bytes` bytes; fixed sizes become single moves.
template <int kBytes>
FQVAE_INLINE void copy_slot(char* dst, const char* src, int64_t bytes) {
  if constexpr (kBytes > 0) {
    std::memcpy(dst, src, kBytes);
  } else {
    std::memcpy(dst, src, static_cast<size_t>(bytes));
  }
}

template <class F>
void with_slot_size(int64_t bytes, F&& f) {
  switch (bytes) {
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
    default:
      return f(std::integral_constant<int, 0>{});
  }
}

}  // namespace

at::Tensor random_bits(int64_t rows, int64_t cols, uint64_t seed, uint32_t offset) {
  TORCH_CHECK(rows >= 0 && cols >= 0, "random_bits: rows and cols must be >= 0");
  at::Tensor out = at::empty({rows, cols}, at::TensorOptions().dtype(at::kLong));
  const StreamArgs args{cols, seed, offset, out.data_ptr(), cols};
  const auto fn = bits_kernel();
  at::parallel_for(0, rows, grain_for(cols), [&](int64_t b, int64_t e) { fn(args, b, e); });
  return out;
}

std::tuple<at::Tensor, at::Tensor> permute_forward(const at::Tensor& x, uint64_t seed,
                                                   uint32_t offset) {
  check_cpu(x, "x");
  TORCH_CHECK(x.dim() == 3, "x must be (B, L, F)");
  const int64_t B = x.size(0), L = x.size(1), F = x.size(2);
  TORCH_CHECK(B <= (int64_t{1} << 32), "permute: batch must be at most 2^32");
  at::Tensor perm = at::empty({B, L}, x.options().dtype(at::kLong));
  const StreamArgs args{B, seed, offset, perm.data_ptr(), L};
  const auto fn = perm_kernel();
  at::parallel_for(0, L, grain_for(B), [&](int64_t b, int64_t e) { fn(args, b, e); });

  at::Tensor out = at::empty_like(x);
  const int64_t slot = F * static_cast<int64_t>(x.element_size());
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  const int64_t* p = perm.data_ptr<int64_t>();
  with_slot_size(slot, [&](auto size) {
    at::parallel_for(0, B, grain_for(L * slot), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        for (int64_t l = 0; l < L; ++l) {
          copy_slot<decltype(size)::value>(dst + (b * L + l) * slot,
                                           src + (p[b * L + l] * L + l) * slot, slot);
        }
      }
    });
  });
  return {out, perm};
}

at::Tensor permute_backward(const at::Tensor& grad, const at::Tensor& perm) {
  check_cpu(grad, "grad");
  check_cpu(perm, "perm");
  TORCH_CHECK(grad.dim() == 3, "grad must be (B, L, F)");
  TORCH_CHECK(perm.scalar_type() == at::kLong, "perm must be int64");
  const int64_t B = grad.size(0), L = grad.size(1);
  TORCH_CHECK(perm.dim() == 2 && perm.size(0) == B && perm.size(1) == L, "perm must be (B, L)");
  at::Tensor gx = at::zeros_like(grad);
  const int64_t slot = grad.size(2) * static_cast<int64_t>(grad.element_size());
  const char* src = static_cast<const char*>(grad.data_ptr());
  char* dst = static_cast<char*>(gx.data_ptr());
  const int64_t* p = perm.data_ptr<int64_t>();
  std::atomic<bool> bad{false};
  // One column per task: every write of column l comes from that task (no races on bad perms).
  with_slot_size(slot, [&](auto size) {
    at::parallel_for(0, L, grain_for(B * slot), [&](int64_t begin, int64_t end) {
      for (int64_t l = begin; l < end; ++l) {
        for (int64_t b = 0; b < B; ++b) {
          const int64_t to = p[b * L + l];
          if (to < 0 || to >= B) {
            bad.store(true);
            continue;
          }
          copy_slot<decltype(size)::value>(dst + (to * L + l) * slot,
                                           src + (b * L + l) * slot, slot);
        }
      }
    });
  });
  TORCH_CHECK(!bad.load(), "permute_backward: perm has values outside [0, B)");
  return gx;
}

}  // namespace fqvae::cpu
