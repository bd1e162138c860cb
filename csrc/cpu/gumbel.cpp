// Gumbel-softmax relaxed scalar quantization, forward and backward, noise regenerated per tile.
//
// Per element r (lane) and codebook entry k: a_k = -(z - c_k)^2, s_k = (a_k + g_k) / tau,
// y = softmax(s), q = softmax(a). Tiles keep (K, kLanes) scratch arrays only.
// float32 / half inputs draw the noise with the vectorized fast_log; float64 inputs use ATen's
// float32 log (exactly the reference's noise) in chunks, so float64 matches the reference to
// float64 precision.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/log.h>
#include <ATen/ops/neg.h>

#include <cmath>
#include <limits>
#include <vector>

#include "glue.h"
#include "ops.h"
#include "random.h"
#include "simd.h"
#include "vecmath.h"

namespace fqvae::cpu {
namespace {

constexpr double kKlEps = 1e-10;   // as fqvae.reference.KL_EPS
constexpr int kChunkTiles = 64;    // tiles per noise chunk on the float64 (ATen log) path

// h(x) = log(x + eps) + x / (x + eps) per lane, x = K q: the reference's KL gradient factor.
template <class V>
FQVAE_INLINE V kl_h(V x) {
  V out;
  for (int i = 0; i < kCount<V>; ++i) out[i] = std::log(x[i] + kKlEps) + x[i] / (x[i] + kKlEps);
  return out;
}

// In place: u -> -log(-log(u)) with ATen's float32 log, the reference's own arithmetic.
void exact_gumbel(float* buf, int64_t count) {
  at::Tensor t = at::from_blob(buf, {count}, at::TensorOptions().dtype(at::kFloat));
  t.log_().neg_().log_().neg_();
}

struct Layout {
  int64_t n;       // elements of z
  int64_t rows;    // codebook rows C: element r uses row r % C
  int K;           // codebook size
  int64_t stride;  // row stride of the tiled codebook, C + kLanes
  Groups groups;
};

struct Common {
  Layout L;
  const void* z;    // (N,) storage S
  const void* ext;  // tiled codebook (K, C + kLanes), Acc<S>
  double tau;
  uint64_t seed;
  uint32_t offset;
};

struct ForwardArgs {
  Common c;
  bool hard;
  void* value;     // (N,) storage S
  int64_t* idx;    // (N,)
  void* probs;     // (N, K) storage S, or null
  double* kl;      // (groups,) sums of the per-element KL
};

struct BackwardArgs {
  Common c;
  const void* grad_value;  // (N,) storage S, or null
  const void* grad_probs;  // (N, K) storage S, or null
  bool has_kl;
  double grad_kl;  // d loss / d kl, already divided by N
  void* gz;        // (N,) storage S
  double* gc;      // (groups, K, C + kLanes) per-group codebook gradient sums
};

// Noise for the tiles of one group: fast path per tile, float64 path per chunk of tiles.
template <class Isa, class S>
class NoiseSource {
 public:
  explicit NoiseSource(const Common& c)
      : c_(c),
        chunk_(kExact ? kChunkTiles : 1),
        buf_(static_cast<size_t>(chunk_) * c.L.K * kLanes) {}

  // The (K, kLanes) noise of tile t; tiles must be requested in increasing order.
  const float* tile(int64_t t, int64_t group_end) {
    const int64_t tile_cells = int64_t{c_.L.K} * kLanes;
    if (t >= first_ + filled_) {
      first_ = t;
      filled_ = std::min<int64_t>(chunk_, group_end - t);
      for (int64_t j = 0; j < filled_; ++j) {
        const auto r0 = static_cast<uint64_t>((t + j) * kLanes);
        float* dst = buf_.data() + j * tile_cells;
        if constexpr (kExact) {
          uniform_tile<Isa>(r0, c_.L.K, c_.seed, c_.offset, dst);
        } else {
          gumbel_tile<Isa>(r0, c_.L.K, c_.seed, c_.offset, dst);
        }
      }
      if constexpr (kExact) exact_gumbel(buf_.data(), filled_ * tile_cells);
    }
    return buf_.data() + (t - first_) * tile_cells;
  }

 private:
  static constexpr bool kExact = std::is_same_v<S, double>;
  const Common& c_;
  int64_t chunk_, first_ = 0, filled_ = 0;
  std::vector<float> buf_;
};

// The noise of lanes [h * kCount<V>, (h + 1) * kCount<V>) of one (k, tile) row, in V's type.
template <class V>
FQVAE_INLINE V noise_lanes(const float* row, int h) {
  return convert<V>(loadu<Rebind<V, float>>(row + h * kCount<V>));
}

// One tile's inputs and per-lane maxima, shared by forward and backward.
template <class V>
struct Tile {
  V z[kParts<V>];
  V m[kParts<V>];   // max_k s_k
  V ma[kParts<V>];  // max_k a_k
};

// Pass over k: s_k = (a_k + g_k) / tau into `s` (K, kLanes), the maxima, and with kArgmax the
// first argmax of s (as a float index) and its codebook value.
template <class V, bool kArgmax>
FQVAE_INLINE void logits_pass(const Layout& L, const ElemOf<V>* cb, const float* g,
                              ElemOf<V> inv_tau, Tile<V>& t, ElemOf<V>* s, V* best, V* pick) {
  using A = ElemOf<V>;
  constexpr int P = kParts<V>, n = kCount<V>;
  const V neg_inf = splat<V>(-std::numeric_limits<A>::infinity());
  for (int h = 0; h < P; ++h) {
    t.m[h] = neg_inf;
    t.ma[h] = neg_inf;
    if constexpr (kArgmax) {
      best[h] = V{};
      pick[h] = loadu<V>(cb + h * n);
    }
  }
  for (int k = 0; k < L.K; ++k) {
    const A* ck = cb + k * L.stride;
    const V kv = splat<V>(static_cast<A>(k));
    for (int h = 0; h < P; ++h) {
      const V c = loadu<V>(ck + h * n);
      const V d = t.z[h] - c;
      const V a = -(d * d);
      const V sv = (a + noise_lanes<V>(g + k * kLanes, h)) * inv_tau;
      storeu(s + k * kLanes + h * n, sv);
      const auto better = sv > t.m[h];  // strict: ties keep the lowest index
      t.m[h] = better ? sv : t.m[h];
      if constexpr (kArgmax) {
        best[h] = better ? kv : best[h];
        pick[h] = better ? c : pick[h];
      }
      t.ma[h] = a > t.ma[h] ? a : t.ma[h];
    }
  }
}

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
  std::vector<A> s_buf(static_cast<size_t>(L.K) * kLanes);
  std::vector<S> probs_buf(probs ? static_cast<size_t>(L.K) * kLanes : 0);
  A* s = s_buf.data();
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
      logits_pass<V, true>(L, cb, noise.tile(t, t_end), inv_tau, st, s, best, pick);
      for (int k = 0; k < L.K; ++k) {
        const A* ck = cb + k * L.stride;
        A* sk = s + k * kLanes;
        for (int h = 0; h < P; ++h) {
          const V cv = loadu<V>(ck + h * n);
          const V e = exp_acc(loadu<V>(sk + h * n) - st.m[h]);
          storeu(sk + h * n, e);
          se[h] += e;
          sec[h] += e * cv;
          const V d = st.z[h] - cv;
          const V am = -(d * d) - st.ma[h];
          const V eq = exp_acc(am);
          sq[h] += eq;
          sqa[h] += eq * am;
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
            const V d = st.z[h] - loadu<V>(cb + k * L.stride + h * n);
            const V q = exp_acc(-(d * d) - st.ma[h]) / sq[h];
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
  std::vector<A> s_buf(cells), eq_buf(a.has_kl ? cells : 0), gp_buf(grad_probs ? cells : 0);
  std::vector<S> gp_raw(grad_probs ? cells : 0);
  // codebook gradient: float sums over up to kFlushTiles tiles, then added to the double sums
  constexpr int kFlushTiles = 64;
  std::vector<A> gc_part(static_cast<size_t>(L.K * L.stride));
  A* s = s_buf.data();
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
      logits_pass<V, false>(L, cb, noise.tile(t, t_end), inv_tau, st, s, nullptr, nullptr);
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
            const V d = st.z[h] - cv;
            const V am = -(d * d) - st.ma[h];
            const V eq = exp_acc(am);
            storeu(eqs + k * kLanes + h * n, eq);
            sq[h] += eq;
            sqa[h] += eq * am;
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
              gl += kq[h] * eq * ((-(d * d) - st.ma[h]) - kbar[h]);
            }
          }
          gzt[h] -= A(2) * gl * d;
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

template <class S>
void forward_generic(const ForwardArgs& a, int64_t b, int64_t e) {
  forward_body<Generic, S>(a, b, e);
}
template <class S>
void backward_generic(const BackwardArgs& a, int64_t b, int64_t e) {
  backward_body<Generic, S>(a, b, e);
}
#ifdef FQVAE_X86
template <class S>
FQVAE_TARGET_AVX2 void forward_avx2(const ForwardArgs& a, int64_t b, int64_t e) {
  forward_body<Avx2, S>(a, b, e);
}
template <class S>
FQVAE_TARGET_AVX2 void backward_avx2(const BackwardArgs& a, int64_t b, int64_t e) {
  backward_body<Avx2, S>(a, b, e);
}
#endif

template <class S>
auto forward_kernel() {
#ifdef FQVAE_X86
  if (cpu_has_avx2()) return &forward_avx2<S>;
#endif
  return &forward_generic<S>;
}

template <class S>
auto backward_kernel() {
#ifdef FQVAE_X86
  if (cpu_has_avx2()) return &backward_avx2<S>;
#endif
  return &backward_generic<S>;
}

at::ScalarType acc_type(const at::Tensor& z) {
  return z.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

Common make_common(const at::Tensor& z, const at::Tensor& codebook, const at::Tensor& ext,
                   double tau, uint64_t seed, uint32_t offset) {
  check_cpu(z, "z");
  check_cpu(codebook, "codebook");
  TORCH_CHECK(z.dim() == 2 && codebook.dim() == 2, "z must be (M, D) and codebook (C, K)");
  const int64_t rows = codebook.size(0), K = codebook.size(1);
  TORCH_CHECK(rows == 1 || rows == z.size(1), "codebook rows must be 1 or D");
  TORCH_CHECK(K >= 1 && K <= 65536, "codebook size out of range");
  TORCH_CHECK(tau > 0, "tau must be > 0");
  const Layout L{z.numel(), rows, static_cast<int>(K), rows + kLanes,
                 Groups(z.numel(), K * (rows + kLanes))};
  return Common{L, z.data_ptr(), ext.data_ptr(), tau, seed, offset};
}

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
    run_groups(forward_kernel<decltype(s)>(), args, c.L.groups.count);
  });
  at::Tensor kl_mean = at::empty({}, z.options().dtype(acc_type(z)));
  kl_mean.fill_(sum_in_order(kl) / static_cast<double>(std::max<int64_t>(c.L.n, 1)));
  return {value, idx, kl_mean, probs};
}

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
    run_groups(backward_kernel<decltype(s)>(), args, c.L.groups.count);
  });
  at::Tensor gcb =
      fold_codebook_partials(gc, c.L.groups.count, c.L.rows, c.L.K, 1.0, codebook.scalar_type());
  return {gz, gcb};
}

}  // namespace fqvae::cpu
