"""DGM's mask functions (dynamos_jax/methods/dgm/hat.py) against hand-worked values
(docs/dgm.md#masks-and-their-scale, docs/dgm.md#growth-after-each-task)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.dgm import hat

S = 1e4


def test_code_schedule_starts_reversed_and_stops_short_of_smax():
  args = dict(epochs=101, batches=90, samples=5731, batch_size=64, smax=S)
  # e = 0, j = 0: s^0 = 1/S, and the batch ramp starts at 1/s^0 = S.
  s, s_e = hat.scale("code", 0, 0, local=True, **args)
  np.testing.assert_allclose([s, s_e], [1e4, 1e-4], rtol=1e-6)
  # The last batch of epoch 0 (j = 89 * 64): down to almost 1/S.
  s, _ = hat.scale("code", 0, 89, local=True, **args)
  np.testing.assert_allclose(s, 1e4 + (1e-4 - 1e4) * 89 * 64 / 5731, rtol=1e-5)
  # The last epoch reaches only (I - 1)/I of S (9900.99...), its first batch 1/s^e.
  s, s_e = hat.scale("code", 100, 0, local=True, **args)
  s_last = 1e-4 + (1e4 - 1e-4) * 100 / 101
  np.testing.assert_allclose([s, s_e], [1.0 / s_last, s_last], rtol=1e-5)
  s, _ = hat.scale("code", 100, 89, local=True, **args)
  np.testing.assert_allclose(s, 1 / s_last + (s_last - 1 / s_last) * 5696 / 5731, rtol=1e-5)
  # DGMa: no local ramp.
  s, s_e = hat.scale("code", 100, 89, local=False, **args)
  np.testing.assert_allclose([s, s_e], [s_last, s_last], rtol=1e-6)


def test_paper_schedule_reaches_smax():
  args = dict(epochs=101, batches=90, samples=5731, batch_size=64, smax=S)
  s, s_e = hat.scale("paper", 0, 0, local=True, **args)
  np.testing.assert_allclose([s, s_e], [1e4, 1e-4], rtol=1e-6)  # eq. 4 at b = 1, i = 1
  s, s_e = hat.scale("paper", 100, 89, local=True, **args)
  np.testing.assert_allclose([s, s_e], [S, S], rtol=1e-6)
  s, _ = hat.scale("paper", 50, 0, local=False, **args)
  np.testing.assert_allclose(s, 1e-4 + (1e4 - 1e-4) * 0.5, rtol=1e-6)
  # One epoch of one batch: the ratios count as 1, ending at S.
  s, s_e = hat.scale(
    "paper", 0, 0, epochs=1, batches=1, samples=10, batch_size=64, smax=S, local=True
  )
  np.testing.assert_allclose([s, s_e], [S, S], rtol=1e-6)


def test_binarise_and_cumulate():
  e = jnp.array([-1e-3, -1e-9, 0.0, 1e-3, 5.0])
  exist = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])
  b = hat.binarise(e, S, exist)
  # sigmoid(S e) >= 0.5 <=> e >= 0 (an untouched embedding, 0, reserves its entry);
  # a padding entry never binarises to 1.
  np.testing.assert_array_equal(b, [0, 0, 1, 1, 0])
  cum = hat.cumulate(jnp.array([1.0, 0.0, 0.0, 0.0, 0.0]), b)
  np.testing.assert_array_equal(cum, [1, 0, 1, 1, 0])


def test_compensation_factor():
  g = jnp.array([1.0, 1.0, 2.0])
  e = jnp.array([0.5, 0.5, 20.0])
  out = hat.compensate(g, e, s=2.0, s_epoch=4.0, thres_cosh=50.0)
  # (s^e / s) (cosh(s e) + 1) / (cosh(e) + 1): 2 * (cosh 1 + 1) / (cosh 0.5 + 1).
  f = 2.0 * (1.5430806348 + 1.0) / (1.1276259652 + 1.0)
  # s e = 40: unclipped; cosh(40) / cosh(20) ~ e^20.
  big = 2.0 * 2.0 * (math.cosh(40.0) + 1) / (math.cosh(20.0) + 1)
  np.testing.assert_allclose(out, [f, f, big], rtol=1e-5)
  # The clip: s e = 200 -> cosh(50).
  out = hat.compensate(jnp.array([1.0]), jnp.array([2.0]), s=100.0, s_epoch=100.0)
  np.testing.assert_allclose(out, [(math.cosh(50.0) + 1) / (math.cosh(2.0) + 1)], rtol=1e-5)


def test_regulariser_counts_free_active_entries():
  masks = [jnp.array([0.2, 0.8, 0.6]), jnp.array([0.3, 0.9])]
  cums = [jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 0.0])]
  exists = [jnp.array([1.0, 1.0, 0.0]), jnp.array([1.0, 1.0])]
  # Free active entries: layer 1 entry 1 (0.8), layer 2 both (0.3, 0.9): 2.0 / 3.
  np.testing.assert_allclose(hat.regulariser(masks, cums, exists), 2.0 / 3.0, rtol=1e-6)
  # At t = 0 (nothing reserved) it is the mean mask over the active entries.
  zeros = [jnp.zeros(3), jnp.zeros(2)]
  np.testing.assert_allclose(hat.regulariser(masks, zeros, exists), 2.2 / 4, rtol=1e-6)
  # Everything reserved: 0, not a division by zero.
  ones = [jnp.ones(3), jnp.ones(2)]
  assert float(hat.regulariser(masks, ones, exists)) == 0.0


def test_alpha_is_channels_now_over_start():
  assert hat.alpha((24, 12, 6), (24, 12, 6)) == 1.0
  assert hat.alpha((30, 15, 8), (24, 12, 6)) == pytest.approx(53 / 42)


def test_weight_conditioners():
  cum = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  exist = jnp.array([[1.0, 1.0], [1.0, 0.0]])
  np.testing.assert_array_equal(hat.weight_conditioner_w(cum, exist), [[0, 1], [1, 0]])
  cum_out = jnp.array([1.0, 0.0])
  cum_in = jnp.array([1.0, 0.0, 1.0])
  ones = jnp.ones((3, 2, 1, 1))
  got = hat.weight_conditioner_a(cum_out, cum_in, ones)[:, :, 0, 0]
  # Frozen only where both the output unit and the input unit are reserved.
  np.testing.assert_array_equal(got, [[0, 1], [1, 1], [0, 1]])
  first = hat.weight_conditioner_a(cum_out, None, ones)[:, :, 0, 0]
  np.testing.assert_array_equal(first, [[0, 1]] * 3)


def test_growth_of_a_hand_example():
  # MNIST DGMw at the start: n = (128, 24, 12), p = (24, 12, 6), k = 4.
  delta = (1000, 500, 300)
  # a1 = ceil(1000 / 2048) = 1; a2 = ceil((500 - 1*12*16) / (25*16)) = ceil(308/400) = 1;
  # a3 = ceil((300 - 1*6*16) / (13*16)) = ceil(204/208) = 1.
  assert hat.growth_w(delta, (128, 24, 12), (24, 12, 6), 4) == (1, 1, 1)
  # The paper's rule: ceil(1000/2048), ceil(500/384), ceil(300/192).
  assert hat.growth_w(delta, (128, 24, 12), (24, 12, 6), 4, credit=False) == (1, 2, 2)
  # The credit can cover the whole need: ceil(-92/400) -> 0 new channels.
  assert hat.growth_w((3000, 100, 0), (128, 24, 12), (24, 12, 6), 4) == (2, 0, 0)
  # Exact multiples do not round up.
  assert hat.growth_w((4096, 0, 0), (128, 24, 12), (24, 12, 6), 4) == (2, 0, 0)
  assert hat.growth_a((5, 0, 3)) == (5, 0, 3)
