// Torch-facing helpers shared by the CPU kernels: dtype dispatch, argument checks, the tiled
// codebook layout, and the parallel loop over reduction groups.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "common.h"

namespace fqvae::cpu {

// Calls f(S{}) with S the storage type of `type` (float, double, Half, BFloat16).
template <class F>
decltype(auto) dispatch_storage(at::ScalarType type, const char* name, F&& f) {
  switch (type) {
    case at::kFloat:
      return f(float{});
    case at::kDouble:
      return f(double{});
    case at::kHalf:
      return f(Half{});
    case at::kBFloat16:
      return f(BFloat16{});
    default:
      TORCH_CHECK(false, name, ": unsupported dtype ", type);
  }
}

IndexType index_type(at::ScalarType type);

// float64 for float64 z, else float32.
at::ScalarType acc_type(const at::Tensor& z);

// Sizes of a quantizer call on canonical inputs: z (M, D), codebook (C, K) with C in {1, D}.
struct Layout {
  int64_t n;       // elements of z
  int64_t rows;    // codebook rows C: element r uses row r % C
  int K;           // codebook size
  int64_t stride;  // row stride of the tiled codebook, C + kLanes
  Groups groups;   // reduction groups; one group's codebook partial is K * stride doubles
};

// Checks the canonical layouts (CPU, contiguous, C in {1, D}) and returns the sizes.
Layout quantizer_layout(const at::Tensor& z, const at::Tensor& codebook);

// The codebook laid out for tiles: ext[k][j] = codebook[j % C][k] for j < C + kLanes, in the
// accumulate dtype `acc`. A tile starting at flat element r0 reads its lane values contiguously
// from ext + r0 % C (row stride C + kLanes). Shape (K, C + kLanes).
at::Tensor tile_codebook(const at::Tensor& codebook, at::ScalarType acc);

// Sums per-group partials, each (K, C + kLanes) laid out like tile_codebook, times `scale` into
// a (C, K) tensor of `dtype`: columns j fold onto rows j % C, groups are added in order.
at::Tensor fold_codebook_partials(const std::vector<double>& partials, int64_t groups,
                                  int64_t rows, int64_t K, double scale, at::ScalarType dtype);

// Sum of per-group scalars in group order.
double sum_in_order(const std::vector<double>& partials);

// Calls with less work than this (in units of one nearest-value distance, a few ns) run on the
// calling thread: waking the thread pool costs tens of microseconds, more than it saves.
constexpr int64_t kSerialWork = int64_t{1} << 19;

// Runs fn(args, g, g + 1) for every group g in [0, count), in parallel when `work` (see
// kSerialWork) is large enough. Groups are handed out one at a time from a shared counter, so a
// thread slowed down by other processes does not hold up the rest; results do not depend on
// which thread ran a group.
template <class Args>
void run_groups(void (*fn)(const Args&, int64_t, int64_t), const Args& args, int64_t count,
                int64_t work) {
  if (work < kSerialWork || at::get_num_threads() == 1) {
    fn(args, 0, count);
    return;
  }
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(count, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t g = next++; g < count; g = next++) fn(args, g, g + 1);
  });
}

void check_cpu(const at::Tensor& t, const char* name);

}  // namespace fqvae::cpu
