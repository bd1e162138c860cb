// Gumbel quantization forward: value, argmax index, KL to the uniform prior, optional probs.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "gumbel.h"
#include "ops.h"

namespace fqvae::cpu {
namespace {

using gumbel::Common;
using gumbel::NoiseSource;
using gumbel::Tile;
using gumbel::kKlEps;
using gumbel::logits_pass;
using gumbel::make_common;

struct ForwardArgs {
  Common c;
  bool hard;
  void* value;    // (N,) storage S
  int64_t* idx;   // (N,)
  void* probs;    // (N, K) storage S, or null
  double* kl;     // (groups,) sums of the per-element KL
};

template <class Isa, class S>
FQVAE_INLINE void forward_body(const ForwardArgs& a, int64_t g_begin, int64_t g_end) {
  using A = Acc<S>;
  using V = VecOf<Isa, A>;
  constexpr int P = kParts<V>, n = kCount<V>;
  const Common& c = a.c;
  const Layout& L = c.L;
  const S* z = static_cast<const S*>(c.z);
  const A* ext = static_cast<const A*>(c.ext);
  S* value = static_cast<S*>(a.value);
  S* probs = static_cast<S*>(a.probs);
  const A inv_tau = static_cast<A>(1.0 / c.tau);
  const A log_k = static_cast<A>(std::log(static_cast<double>(L.K)));
  NoiseSource<Isa, S> noise(c);
  std::vector<A> s_buf(static_cast<size_t>(L.K) * kLanes), a_buf(s_buf.size());
  std::vector<S> probs_buf(probs ? static_cast<size_t>(L.K) * kLanes : 0);
  A* s = s_buf.data();
  A* av = a_buf.data();
  for (int64_t g = g_begin; g < g_end; ++g) {
    LaneSums<V> kl_sums;
    const int64_t t_end = L.groups.end(g);
    for (int64_t t = L.groups.begin(g); t < t_end; ++t) {
      const int64_t r0 = t * kLanes;
      const int valid = static_cast<int>(std::min<int64_t>(kLanes, L.n - r0));
      const A* cb = ext + r0 % L.rows;
      Tile<V> st;
      V best[P], pick[P], se[P] = {}, sec[P] = {}, sq[P] = {}, sqa[P] = {};
      load_tile(z + r0, valid, st.z);
      logits_pass<V, true>(L, cb, noise.tile(t, t_end), inv_tau, st, av, s, best, pick);
      for (int k = 0; k < L.K; ++k) {
        const A* ck = cb + k * L.stride;
        A* sk = s + k * kLanes;
        for (int h = 0; h < P; ++h) {
          const V cv = loadu<V>(ck + h * n);
          const V e = exp_acc(loadu<V>(sk + h * n) - st.m[h]);
          storeu(sk + h * n, e);
          se[h] += e;
          sec[h] += e * cv;
          const V am = loadu<V>(av + k * kLanes + h * n) - st.ma[h];
          const V eq = exp_acc(am);
          sq[h] += eq;
          sqa[h] += eq == V{} ? V{} : eq * am;  // a_k = -inf adds 0, not NaN
        }
      }
      V out[P], kl[P], inv[P];
      for (int h = 0; h < P; ++h) {
        inv[h] = A(1) / se[h];
        const V soft = sec[h] * inv[h];
        out[h] = a.hard ? soft + (pick[h] - soft) : soft;
      }
      if constexpr (std::is_same_v<A, double>) {
        // float64: sum_k q_k log(K q_k + eps) exactly as the reference writes it
        for (int h = 0; h < P; ++h) kl[h] = V{};
        for (int k = 0; k < L.K; ++k) {
          for (int h = 0; h < P; ++h) {
            const V q = exp_acc(loadu<V>(av + k * kLanes + h * n) - st.ma[h]) / sq[h];
            V lg = L.K * q + kKlEps;
            for (int i = 0; i < n; ++i) lg[i] = std::log(lg[i]);
            kl[h] += q * lg;
          }
        }
      } else {
        // float32: log(K q_k) = log K + (a_k - max a) - log sq; the eps changes less than 1e-10
        for (int h = 0; h < P; ++h) kl[h] = (log_k - fast_log(sq[h])) + sqa[h] / sq[h];
      }
      if (valid < kLanes) {
        for (int h = 0; h < P; ++h) kl[h] = lanes_below<V>(h, valid) ? kl[h] : V{};
      }
      kl_sums.add(kl);
      store_tile(out, valid, value + r0);
      int32_t bi[kLanes];
      tile_to_int32(best, bi);
      store_indices(a.idx, IndexType::kI64, r0, bi, valid);
      if (probs) {
        // y = e / sum e, converted per k row, then transposed into (element, k) order
        S* pb = probs_buf.data();
        for (int k = 0; k < L.K; ++k) {
          for (int h = 0; h < P; ++h) {
            store_lanes(pb + k * kLanes + h * n, loadu<V>(s + k * kLanes + h * n) * inv[h]);
          }
        }
        for (int i = 0; i < valid; ++i) {
          S* row = probs + (r0 + i) * L.K;
          for (int k = 0; k < L.K; ++k) row[k] = pb[k * kLanes + i];
        }
      }
    }
    a.kl[g] = kl_sums.sum();
  }
}

FQVAE_ISA_KERNEL(forward_kernel, forward_body, ForwardArgs)

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::optional<at::Tensor>> gumbel_forward(
    const at::Tensor& z, const at::Tensor& codebook, double tau, uint64_t seed, uint32_t offset,
    bool hard, bool return_probs) {
  const at::Tensor ext = tile_codebook(codebook, acc_type(z));
  const Common c = make_common(z, codebook, ext, tau, seed, offset);
  at::Tensor value = at::empty_like(z);
  at::Tensor idx = at::empty(z.sizes(), z.options().dtype(at::kLong));
  std::optional<at::Tensor> probs;
  if (return_probs) probs = at::empty({z.size(0), z.size(1), c.L.K}, z.options());
  std::vector<double> kl(static_cast<size_t>(c.L.groups.count));
  ForwardArgs args{c,
                   hard,
                   value.data_ptr(),
                   idx.data_ptr<int64_t>(),
                   probs ? probs->data_ptr() : nullptr,
                   kl.data()};
  dispatch_storage(z.scalar_type(), "gumbel_forward", [&](auto s) {
    run_groups(forward_kernel<decltype(s)>(), args, c.L.groups.count,
               gumbel::kGumbelCost * c.L.n * c.L.K);
  });
  at::Tensor kl_mean = at::empty({}, z.options().dtype(acc_type(z)));
  kl_mean.fill_(sum_in_order(kl) / static_cast<double>(std::max<int64_t>(c.L.n, 1)));
  return {value, idx, kl_mean, probs};
}

}  // namespace fqvae::cpu
