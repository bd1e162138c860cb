// Nearest scalar quantization: argmin_k (z - c_k)^2 per element, and its backward.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/stack.h>

#include <atomic>
#include <limits>
#include <vector>

#include "glue.h"
#include "ops.h"
#include "simd.h"

namespace fqvae::cpu {
namespace {

struct ForwardArgs {
  Layout L;
  const void* z;    // (N,) storage S
  const void* ext;  // tiled codebook (K, C + kLanes), Acc<S>
  const void* bounds;  // tiled (4, C + kLanes), Acc<S>: each row's min, max, argmin, argmax
  void* q;          // (N,) storage S
  void* idx;        // (N,) index dtype
  IndexType idx_type;
  double* sse;  // (groups,)
};

struct BackwardArgs {
  Layout L;
  const void* grad_q;  // (N,) storage S, or null
  const void* z;
  const void* ext;
  const void* idx;
  IndexType idx_type;
  double coef_z;
  void* gz;         // (N,) storage S
  double* gc;       // (groups, K, C + kLanes): per-group sums of q - z
  std::atomic<bool>* bad_index;  // set when an index is outside [0, K)
};

template <class Isa, class S>
FQVAE_INLINE void forward_body(const ForwardArgs& a, int64_t g_begin, int64_t g_end) {
  using A = Acc<S>;
  using V = VecOf<Isa, A>;
  constexpr int P = kParts<V>, n = kCount<V>;
  const Layout& L = a.L;
  const S* z = static_cast<const S*>(a.z);
  const A* ext = static_cast<const A*>(a.ext);
  const A* bounds = static_cast<const A*>(a.bounds);
  S* q = static_cast<S*>(a.q);
  const V nan = splat<V>(std::numeric_limits<A>::quiet_NaN());
  for (int64_t g = g_begin; g < g_end; ++g) {
    LaneSums<V> sse;
    for (int64_t t = L.groups.begin(g); t < L.groups.end(g); ++t) {
      const int64_t r0 = t * kLanes;
      const int valid = static_cast<int>(std::min<int64_t>(kLanes, L.n - r0));
      const A* cb = ext + r0 % L.rows;
      V zt[P], best_d[P], best_c[P], best_k[P], out[P], err[P];
      load_tile(z + r0, valid, zt);
      for (int h = 0; h < P; ++h) {
        const V c = loadu<V>(cb + h * n);
        const V d = zt[h] - c;
        best_d[h] = d * d;
        best_c[h] = c;
        best_k[h] = V{};
      }
      for (int k = 1; k < L.K; ++k) {
        const A* ck = cb + k * L.stride;
        const V kv = splat<V>(static_cast<A>(k));
        for (int h = 0; h < P; ++h) {
          const V c = loadu<V>(ck + h * n);
          const V d = zt[h] - c;
          const V d2 = d * d;
          const auto better = d2 < best_d[h];  // strict: ties keep the lowest index
          best_d[h] = better ? d2 : best_d[h];
          best_c[h] = better ? c : best_c[h];
          best_k[h] = better ? kv : best_k[h];
        }
      }
      // z beyond the row's range takes its end value (first index): the squared distances of
      // a huge finite z round to ties, so the range check decides there (NaN fails both tests)
      const A* bd = bounds + r0 % L.rows;
      for (int h = 0; h < P; ++h) {
        const V lo = loadu<V>(bd + h * n), hi = loadu<V>(bd + L.stride + h * n);
        const V klo = loadu<V>(bd + 2 * L.stride + h * n);
        const V khi = loadu<V>(bd + 3 * L.stride + h * n);
        const auto above = zt[h] > hi, below = zt[h] < lo;
        best_c[h] = above ? hi : (below ? lo : best_c[h]);
        best_k[h] = above ? khi : (below ? klo : best_k[h]);
      }
      for (int h = 0; h < P; ++h) {
        const auto finite = zt[h] - zt[h] == V{};
        const V qv = finite ? best_c[h] : nan;
        const V e = zt[h] - qv;
        out[h] = qv + (zt[h] - zt[h]);  // as the reference: exactly q, NaN for non-finite z
        err[h] = valid == kLanes ? e * e : (lanes_below<V>(h, valid) ? e * e : V{});
        best_k[h] = finite ? best_k[h] : V{};
      }
      sse.add(err);
      store_tile(out, valid, q + r0);
      int32_t ki[kLanes];
      tile_to_int32(best_k, ki);
      store_indices(a.idx, a.idx_type, r0, ki, valid);
    }
    a.sse[g] = sse.sum();
  }
}

template <class Isa, class S>
FQVAE_INLINE void backward_body(const BackwardArgs& a, int64_t g_begin, int64_t g_end) {
  using A = Acc<S>;
  using V = VecOf<Isa, A>;
  constexpr int P = kParts<V>, n = kCount<V>;
  const Layout& L = a.L;
  const S* z = static_cast<const S*>(a.z);
  const S* grad_q = static_cast<const S*>(a.grad_q);
  const A* ext = static_cast<const A*>(a.ext);
  const A coef_z = static_cast<A>(a.coef_z);
  S* gz = static_cast<S*>(a.gz);
  const V nan = splat<V>(std::numeric_limits<A>::quiet_NaN());
  bool bad = false;
  for (int64_t g = g_begin; g < g_end; ++g) {
    double* acc = a.gc + g * L.K * L.stride;
    std::fill(acc, acc + L.K * L.stride, 0.0);
    for (int64_t t = L.groups.begin(g); t < L.groups.end(g); ++t) {
      const int64_t r0 = t * kLanes;
      const int valid = static_cast<int>(std::min<int64_t>(kLanes, L.n - r0));
      const int64_t d0 = r0 % L.rows;
      const A* cb = ext + d0;
      V zt[P], gq[P], out[P];
      A qa[kLanes], diff[kLanes];
      int32_t k[kLanes] = {};
      load_tile(z + r0, valid, zt);
      if (grad_q) {
        load_tile(grad_q + r0, valid, gq);
      } else {
        for (int h = 0; h < P; ++h) gq[h] = V{};
      }
      load_indices(a.idx, a.idx_type, r0, k, valid);
      for (int i = 0; i < kLanes; ++i) {
        const bool in_range = static_cast<uint32_t>(k[i]) < static_cast<uint32_t>(L.K);
        bad |= !in_range;
        k[i] = in_range ? k[i] : 0;
        qa[i] = cb[k[i] * L.stride + i];
      }
      for (int h = 0; h < P; ++h) {
        // non-finite z: NaN gradient, no codebook contribution (as the reference)
        const auto finite = zt[h] - zt[h] == V{};
        const V qv = loadu<V>(qa + h * n);
        out[h] = gq[h] + coef_z * (zt[h] - (finite ? qv : nan));
        storeu(diff + h * n, finite ? qv - zt[h] : V{});
      }
      store_tile(out, valid, gz + r0);
      for (int i = 0; i < valid; ++i) acc[k[i] * L.stride + d0 + i] += diff[i];
    }
  }
  if (bad) a.bad_index->store(true);
}

FQVAE_ISA_KERNEL(forward_kernel, forward_body, ForwardArgs)
FQVAE_ISA_KERNEL(backward_kernel, backward_body, BackwardArgs)

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> nearest_forward(const at::Tensor& z,
                                                               const at::Tensor& codebook,
                                                               at::ScalarType index_dtype) {
  const Layout L = quantizer_layout(z, codebook);
  const at::Tensor ext = tile_codebook(codebook, acc_type(z));
  const at::Tensor cb = codebook.to(acc_type(z));
  const at::Tensor bounds = tile_codebook(
      at::stack({std::get<0>(cb.min(1)), std::get<0>(cb.max(1)), cb.argmin(1).to(cb.dtype()),
                 cb.argmax(1).to(cb.dtype())},
                1),
      acc_type(z));
  at::Tensor q = at::empty_like(z);
  at::Tensor idx = at::empty(z.sizes(), z.options().dtype(index_dtype));
  std::vector<double> sse(static_cast<size_t>(L.groups.count));
  ForwardArgs args{L,
                   z.data_ptr(),
                   ext.data_ptr(),
                   bounds.data_ptr(),
                   q.data_ptr(),
                   idx.data_ptr(),
                   index_type(index_dtype),
                   sse.data()};
  dispatch_storage(z.scalar_type(), "nearest_forward", [&](auto s) {
    run_groups(forward_kernel<decltype(s)>(), args, L.groups.count, L.n * L.K);
  });
  at::Tensor total = at::empty({}, z.options().dtype(acc_type(z)));
  total.fill_(sum_in_order(sse));
  return {q, idx, total};
}

std::tuple<at::Tensor, at::Tensor> nearest_backward(const std::optional<at::Tensor>& grad_q,
                                                    const at::Tensor& coef_z,
                                                    const at::Tensor& coef_c, const at::Tensor& z,
                                                    const at::Tensor& codebook,
                                                    const at::Tensor& idx) {
  const Layout L = quantizer_layout(z, codebook);
  check_cpu(idx, "idx");
  TORCH_CHECK(idx.sizes() == z.sizes(), "idx must have the shape of z");
  const at::Tensor ext = tile_codebook(codebook, acc_type(z));
  at::Tensor gq;
  if (grad_q.has_value()) {
    gq = grad_q->to(z.scalar_type()).contiguous();
    TORCH_CHECK(gq.sizes() == z.sizes(), "grad_q must have the shape of z");
  }
  at::Tensor gz = at::empty_like(z);
  std::vector<double> gc(static_cast<size_t>(L.groups.count * L.K * L.stride));
  std::atomic<bool> bad{false};
  BackwardArgs args{L,
                    gq.defined() ? gq.data_ptr() : nullptr,
                    z.data_ptr(),
                    ext.data_ptr(),
                    idx.data_ptr(),
                    index_type(idx.scalar_type()),
                    coef_z.item<double>(),
                    gz.data_ptr(),
                    gc.data(),
                    &bad};
  dispatch_storage(z.scalar_type(), "nearest_backward", [&](auto s) {
    run_groups(backward_kernel<decltype(s)>(), args, L.groups.count, L.n);
  });
  TORCH_CHECK(!bad.load(), "nearest_backward: idx has values outside [0, K)");
  at::Tensor gcb = fold_codebook_partials(gc, L.groups.count, L.rows, L.K, coef_c.item<double>(),
                                          codebook.scalar_type());
  return {gz, gcb};
}

}  // namespace fqvae::cpu
