"""Their MNIST netD against our Discriminator on the same weights and images (CPU torch + jax).

  /tmp/torchenv/bin/python reference/dgm/check_d.py --ref=/tmp/dgm_ref \
      --data=/tmp/dgm_ref_data/quick_seed0.npz

Builds their ``networks/net_DGMw.netD(ndf, 1)`` with a 2-class aux head,
copies its weights into our ``models.dgm_discriminator.Discriminator`` (conv
OIHW -> HWIO; the heads' inputs permuted from their (C, H, W) flatten to our
(H, W, C)), and feeds both the first B training images of tasks 0 and 1 of the
dump, mixed. Prints the largest differences of: the train-mode critic and
logits; BN running statistics after that forward (theirs unbiased, ours biased:
compared after the n / (n - 1) factor); the eval-mode outputs; the CE gradient
of every parameter; the parameters after one Adam step each (their
torch.optim.Adam, our optax.adam, lr 2e-3, betas (0.5, 0.999)). A check of the
D module and its optimiser step only (the loop, G and masks are not here).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))


def head_weight(w, channels: int):
  """A head's torch weight [out, C*4*4] ((C, H, W) flatten) -> our Dense kernel [4*4*C, out]."""
  return w.reshape(w.shape[0], channels, 4, 4).transpose(2, 3, 1, 0).reshape(channels * 16, -1)


def d_variables(net_d, ndf: int):
  """Their netD's weights and BN statistics as our Discriminator's (params, batch_stats)."""
  import jax
  import jax.numpy as jnp

  t = {k: v.detach().numpy() for k, v in net_d.state_dict().items()}
  c4 = 4 * ndf
  params = {
    "conv1": {"kernel": t["conv1.weight"].transpose(2, 3, 1, 0)},  # OIHW -> HWIO
    "conv2": {"kernel": t["conv2.weight"].transpose(2, 3, 1, 0)},
    "conv3": {"kernel": t["conv3.weight"].transpose(2, 3, 1, 0)},
    "bn2": {"scale": t["BatchNorm2.weight"], "bias": t["BatchNorm2.bias"]},
    "bn3": {"scale": t["BatchNorm3.weight"], "bias": t["BatchNorm3.bias"]},
    "critic": {"kernel": head_weight(t["disc_linear.weight"], c4), "bias": t["disc_linear.bias"]},
    "aux": {"kernel": head_weight(t["aux_linear.weight"], c4), "bias": t["aux_linear.bias"]},
  }
  stats = {
    "bn2": {"mean": t["BatchNorm2.running_mean"], "var": t["BatchNorm2.running_var"]},
    "bn3": {"mean": t["BatchNorm3.running_mean"], "var": t["BatchNorm3.running_var"]},
  }
  return jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, stats)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ref", required=True)
  parser.add_argument("--data", required=True)
  parser.add_argument("--ndf", type=int, default=16)
  parser.add_argument("--batch", type=int, default=32)
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  import torch

  from dynamos_jax.methods.dgm.discriminator import Discriminator

  sys.path[:0] = [os.path.join(HERE, "stubs"), os.path.abspath(args.ref), HERE]
  from networks import net_DGMw
  import refdata

  torch.manual_seed(0)
  tasks, _ = refdata.load(args.data)
  b = args.batch
  x = np.concatenate([tasks[0]["train_x"][:b], tasks[1]["train_x"][:b]])
  y = np.concatenate([np.zeros(b, np.int64), np.ones(b, np.int64)])
  perm = np.random.RandomState(0).permutation(len(x))[:b]  # one mixed chunk of B
  x, y = x[perm], y[perm]

  theirs = net_DGMw.netD(args.ndf, 1)
  theirs.aux_linear = torch.nn.Linear(theirs.output_size, 2)
  ours = Discriminator(num_classes=2, ndf=args.ndf)
  xj = jnp.asarray(x.transpose(0, 2, 3, 1))
  variables = ours.init(jax.random.key(0), xj, train=False)

  head_to_flax = lambda w: head_weight(w, 4 * args.ndf)
  to_flax = lambda: d_variables(theirs, args.ndf)

  params, stats = to_flax()
  for k in params:  # the structure matches ours
    assert jax.tree.structure(params[k]) == jax.tree.structure(variables["params"][k]), k
    for a, b_ in zip(jax.tree.leaves(params[k]), jax.tree.leaves(variables["params"][k])):
      assert a.shape == b_.shape, (k, a.shape, b_.shape)
  report = lambda name, d: print(f"{name:42s} max |diff| {float(d):.3g}")

  # 1. Train-mode forward and the running statistics it leaves.
  theirs.train()
  xt = torch.from_numpy(x)
  s_t, c_t = theirs(xt)
  (s_o, c_o), upd = ours.apply(
    {"params": params, "batch_stats": stats}, xj, train=True, mutable=["batch_stats"]
  )
  report("train forward: critic", np.abs(s_t.detach().numpy() - np.asarray(s_o)).max())
  report("train forward: logits", np.abs(c_t.detach().numpy() - np.asarray(c_o)).max())
  _, new_stats = to_flax()
  for layer, n in (("bn2", b * 8 * 8), ("bn3", b * 4 * 4)):
    report(
      f"running mean {layer}",
      np.abs(new_stats[layer]["mean"] - upd["batch_stats"][layer]["mean"]).max(),
    )
    # Theirs: 0.9 v + 0.1 unbiased; ours 0.9 v + 0.1 biased: undo the factor on the batch term.
    ours_unbiased = (upd["batch_stats"][layer]["var"] - 0.9 * stats[layer]["var"]) * n / (
      n - 1
    ) + 0.9 * stats[layer]["var"]
    report(
      f"running var {layer} (x n/(n-1) on the batch term)",
      np.abs(new_stats[layer]["var"] - ours_unbiased).max(),
    )

  # 2. Eval mode on the same (their) running statistics.
  theirs.eval()
  with torch.no_grad():
    s_t, c_t = theirs(xt)
  s_o, c_o = ours.apply({"params": params, "batch_stats": new_stats}, xj, train=False)
  report("eval forward: critic", np.abs(s_t.numpy() - np.asarray(s_o)).max())
  report("eval forward: logits", np.abs(c_t.numpy() - np.asarray(c_o)).max())

  # 3. The CE gradient (train mode) and one Adam step.
  theirs.train()
  params, stats = to_flax()
  opt_t = torch.optim.Adam(theirs.parameters(), lr=2e-3, betas=(0.5, 0.999))
  theirs.zero_grad()
  _, c_t = theirs(xt)
  loss_t = torch.nn.functional.cross_entropy(c_t, torch.from_numpy(y))
  loss_t.backward()
  # The critic head is not in the CE graph: None here, zeros in ours (first Adam step: no move).
  grads_t = {
    k: np.zeros(v.shape, np.float32) if v.grad is None else v.grad.numpy().copy()
    for k, v in theirs.named_parameters()
  }
  opt_t.step()

  def loss_fn(p):
    (_, logits), _ = ours.apply(
      {"params": p, "batch_stats": stats}, xj, train=True, mutable=["batch_stats"]
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean()

  loss_o, grads_o = jax.value_and_grad(loss_fn)(params)
  report("CE loss", abs(float(loss_t) - float(loss_o)))
  pairs = {
    "conv1.weight": ("conv1", "kernel"),
    "conv3.weight": ("conv3", "kernel"),
    "BatchNorm2.weight": ("bn2", "scale"),
    "aux_linear.bias": ("aux", "bias"),
  }
  for name, (layer, leaf) in pairs.items():
    g = grads_t[name]
    g = g.transpose(2, 3, 1, 0) if g.ndim == 4 else g
    report(f"CE grad {name}", np.abs(g - np.asarray(grads_o[layer][leaf])).max())
  report(
    "CE grad aux_linear.weight",
    np.abs(head_to_flax(grads_t["aux_linear.weight"]) - np.asarray(grads_o["aux"]["kernel"])).max(),
  )
  tx = optax.adam(2e-3, b1=0.5, b2=0.999)
  new_params = optax.apply_updates(params, tx.update(grads_o, tx.init(params), params)[0])
  stepped, _ = to_flax()
  for layer in sorted(stepped):
    for leaf in sorted(stepped[layer]):
      a, b_ = np.asarray(stepped[layer][leaf]), np.asarray(new_params[layer][leaf])
      worst = np.unravel_index(np.argmax(np.abs(a - b_)), a.shape)
      g = np.abs(np.asarray(grads_o[layer][leaf]))
      # Adam's first step is lr g / (|g| + eps): where |g| is at float-noise level, the
      # two gradients' last bits decide the step.
      report(f"Adam step {layer}.{leaf} (|g| there {g[worst]:.1e})", np.abs(a - b_).max())
  return 0


if __name__ == "__main__":
  sys.exit(main())
