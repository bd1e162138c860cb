// Gumbel quantization backward: gradients of <grad_value, soft value> + grad_kl * kl +
// <grad_probs, y> with respect to z and the codebook.
#include <ATen/ops/empty_like.h>

#include <cstring>

#include "gumbel.h"
#include "ops.h"

namespace fqvae::cpu {
namespace {

using gumbel::Common;
using gumbel::NoiseSource;
using gumbel::Tile;
using gumbel::kl_h;
using gumbel::logits_pass;
using gumbel::make_common;

struct BackwardArgs {
  Common c;
  const void* grad_value;  // (N,) storage S, or null
  const void* grad_probs;  // (N, K) storage S, or null
  bool has_kl;
  double grad_kl;  // d loss / d kl, already divided by N
  void* gz;        // (N,) storage S
  double* gc;      // (groups, K, C + kLanes) per-group codebook gradient sums
};

template <class Isa, class S>
FQVAE_INLINE void backward_body(const BackwardArgs& a, int64_t g_begin, int64_t g_end) {
  using A = Acc<S>;
  using V = VecOf<Isa, A>;
  constexpr int P = kParts<V>, n = kCount<V>;
  const Common& c = a.c;
  const Layout& L = c.L;
  const S* z = static_cast<const S*>(c.z);
  const S* grad_value = static_cast<const S*>(a.grad_value);
  const S* grad_probs = static_cast<const S*>(a.grad_probs);
  const A* ext = static_cast<const A*>(c.ext);
  S* gz = static_cast<S*>(a.gz);
  const A inv_tau = static_cast<A>(1.0 / c.tau);
  const A grad_kl = static_cast<A>(a.grad_kl);
  NoiseSource<Isa, S> noise(c);
  const size_t cells = static_cast<size_t>(L.K) * kLanes;
  std::vector<A> s_buf(cells), a_buf(cells), eq_buf(a.has_kl ? cells : 0), gp_buf(grad_probs ? cells : 0);
  std::vector<S> gp_raw(grad_probs ? cells : 0);
  // codebook gradient: float sums over up to kFlushTiles tiles, then added to the double sums
  constexpr int kFlushTiles = 64;
  std::vector<A> gc_part(static_cast<size_t>(L.K * L.stride));
  A* s = s_buf.data();
  A* av = a_buf.data();
  A* eqs = eq_buf.data();
  A* gp = gp_buf.data();
  for (int64_t g = g_begin; g < g_end; ++g) {
    double* acc = a.gc + g * L.K * L.stride;
    std::fill(acc, acc + L.K * L.stride, 0.0);
    const int64_t t_begin = L.groups.begin(g), t_end = L.groups.end(g);
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t r0 = t * kLanes;
      const int valid = static_cast<int>(std::min<int64_t>(kLanes, L.n - r0));
      const int64_t d0 = r0 % L.rows;
      const A* cb = ext + d0;
      Tile<V> st;
      V gv[P], se[P] = {}, dot[P] = {}, sq[P] = {}, sqa[P] = {};
      load_tile(z + r0, valid, st.z);
      if (grad_value) {
        load_tile(grad_value + r0, valid, gv);
      } else {
        for (int h = 0; h < P; ++h) gv[h] = V{};
      }
      if (grad_probs) {
        // transpose the (element, k) block into (k, lane) order, then convert per k row
        S* raw = gp_raw.data();
        std::memset(static_cast<void*>(raw), 0, cells * sizeof(S));
        for (int i = 0; i < valid; ++i) {
          const S* row = grad_probs + (r0 + i) * L.K;
          for (int k = 0; k < L.K; ++k) raw[k * kLanes + i] = row[k];
        }
        for (int k = 0; k < L.K; ++k) {
          for (int h = 0; h < P; ++h) {
            storeu(gp + k * kLanes + h * n, load_lanes<V>(raw + k * kLanes + h * n));
          }
        }
      }
      logits_pass<V, false>(L, cb, noise.tile(t, t_end), inv_tau, st, av, s, nullptr, nullptr);
      for (int k = 0; k < L.K; ++k) {
        const A* ck = cb + k * L.stride;
        A* sk = s + k * kLanes;
        for (int h = 0; h < P; ++h) {
          const V cv = loadu<V>(ck + h * n);
          const V e = exp_acc(loadu<V>(sk + h * n) - st.m[h]);
          storeu(sk + h * n, e);
          se[h] += e;
          const V gy = grad_probs ? gv[h] * cv + loadu<V>(gp + k * kLanes + h * n) : gv[h] * cv;
          dot[h] += e * gy;
          if (a.has_kl) {
            const V am = loadu<V>(av + k * kLanes + h * n) - st.ma[h];
            const V eq = exp_acc(am);
            storeu(eqs + k * kLanes + h * n, eq);
            sq[h] += eq;
            sqa[h] += eq == V{} ? V{} : eq * am;  // a_k = -inf adds 0, not NaN
          }
        }
      }
      // Per lane: y = e * inv, <y, grad_y> = ybar; padding lanes get zero gradients.
      V inv[P], ybar[P], kq[P], kbar[P];
      for (int h = 0; h < P; ++h) {
        inv[h] = A(1) / se[h];
        kq[h] = a.has_kl ? grad_kl / sq[h] : V{};   // d loss / d eq_k
        kbar[h] = a.has_kl ? sqa[h] / sq[h] : V{};  // sum_k q_k (a_k - max a)
        if (valid < kLanes) {
          const auto live = lanes_below<V>(h, valid);
          inv[h] = live ? inv[h] : V{};
          kq[h] = live ? kq[h] : V{};
        }
        ybar[h] = dot[h] * inv[h];
      }
      if constexpr (std::is_same_v<A, double>) {
        // float64: h_k = log(K q_k + eps) + K q_k / (K q_k + eps) exactly as the reference
        if (a.has_kl) {
          for (int h = 0; h < P; ++h) kbar[h] = V{};
          for (int k = 0; k < L.K; ++k) {
            for (int h = 0; h < P; ++h) {
              const V q = loadu<V>(eqs + k * kLanes + h * n) / sq[h];
              kbar[h] += q * kl_h(L.K * q);
            }
          }
        }
      }
      V gzt[P] = {};
      for (int k = 0; k < L.K; ++k) {
        const A* ck = cb + k * L.stride;
        A* part = gc_part.data() + k * L.stride + d0;
        for (int h = 0; h < P; ++h) {
          const V cv = loadu<V>(ck + h * n);
          const V y = loadu<V>(s + k * kLanes + h * n) * inv[h];
          const V gy = grad_probs ? gv[h] * cv + loadu<V>(gp + k * kLanes + h * n) : gv[h] * cv;
          const V d = st.z[h] - cv;
          V gl = y * (gy - ybar[h]) * inv_tau;
          if (a.has_kl) {
            const V eq = loadu<V>(eqs + k * kLanes + h * n);
            if constexpr (std::is_same_v<A, double>) {
              gl += kq[h] * eq * (kl_h(L.K * (eq / sq[h])) - kbar[h]);
            } else {
              const V am = loadu<V>(av + k * kLanes + h * n) - st.ma[h];
              const V term = kq[h] * eq * (am - kbar[h]);
              gl += eq == V{} ? V{} : term;
            }
          }
          gzt[h] += A(2) * gl * (cv - st.p[h]);  // d a_k / d z, p held fixed
          storeu(part + h * n, loadu<V>(part + h * n) + (gv[h] * y + A(2) * gl * d));
        }
      }
      store_tile(gzt, valid, gz + r0);
      if ((t - t_begin + 1) % kFlushTiles == 0 || t + 1 == t_end) {
        for (int64_t j = 0; j < L.K * L.stride; ++j) {
          acc[j] += gc_part[j];
          gc_part[j] = 0;
        }
      }
    }
  }
}

FQVAE_ISA_KERNEL(backward_kernel, backward_body, BackwardArgs)

}  // namespace

std::tuple<at::Tensor, at::Tensor> gumbel_backward(const std::optional<at::Tensor>& grad_value,
                                                   const std::optional<at::Tensor>& grad_kl,
                                                   const std::optional<at::Tensor>& grad_probs,
                                                   const at::Tensor& z, const at::Tensor& codebook,
                                                   double tau, uint64_t seed, uint32_t offset) {
  const at::Tensor ext = tile_codebook(codebook, acc_type(z));
  const Common c = make_common(z, codebook, ext, tau, seed, offset);
  at::Tensor gv, gp;
  if (grad_value.has_value()) {
    gv = grad_value->to(z.scalar_type()).contiguous();
    TORCH_CHECK(gv.sizes() == z.sizes(), "grad_value must have the shape of z");
  }
  if (grad_probs.has_value()) {
    gp = grad_probs->to(z.scalar_type()).contiguous();
    TORCH_CHECK(gp.numel() == z.numel() * c.L.K, "grad_probs must have shape (M, D, K)");
  }
  at::Tensor gz = at::empty_like(z);
  std::vector<double> gc(static_cast<size_t>(c.L.groups.count * c.L.K * c.L.stride));
  const double kl_scale = static_cast<double>(std::max<int64_t>(c.L.n, 1));
  BackwardArgs args{c,
                    gv.defined() ? gv.data_ptr() : nullptr,
                    gp.defined() ? gp.data_ptr() : nullptr,
                    grad_kl.has_value(),
                    grad_kl.has_value() ? grad_kl->item<double>() / kl_scale : 0.0,
                    gz.data_ptr(),
                    gc.data()};
  dispatch_storage(z.scalar_type(), "gumbel_backward", [&](auto s) {
    run_groups(backward_kernel<decltype(s)>(), args, c.L.groups.count,
               gumbel::kGumbelCost * c.L.n * c.L.K);
  });
  at::Tensor gcb =
      fold_codebook_partials(gc, c.L.groups.count, c.L.rows, c.L.K, 1.0, codebook.scalar_type());
  return {gz, gcb};
}

}  // namespace fqvae::cpu
