"""Their DGMw netG + G step against ours on the same weights, task 0 (CPU torch + jax).

  /tmp/torchenv/bin/python reference/dgm/check_g.py --ref=/tmp/dgm_ref

Builds their ``networks/net_DGMw.netG(128, ngf, 1, smax)`` with task 0's head
and random mask embeddings (N(0, 0.05), so that sigmoid(s e) varies), and their
``netD(ndf, 1)``; copies both into ours (``models.dgm_generator`` params at
the exact widths, no padding; ``Discriminator`` through check_d.d_variables).
On one noise batch with class 0's one-hot prefix, at a scale s and epoch scale
s_e, it compares: G's train-mode images and its BN_0 running statistics; the G
loss of their loop (``-lambda_adv mean critic + lamb_G R``, R the mean mask at
t = 0) with D in train mode; its gradients on conv1-3's weights and, after
their HAT compensation (``s_e / s * (cosh(clip(s e)) + 1) / (cosh(e) + 1)``),
on the embeddings; and the eval-mode images at s = s_max (how they replay).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ref", required=True)
  parser.add_argument("--ngf", type=int, default=6)
  parser.add_argument("--ndf", type=int, default=16)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--s", type=float, default=37.0, help="the batch's mask scale")
  parser.add_argument("--s_epoch", type=float, default=12.0, help="the epoch's scale s^e")
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  from dynamos_jax.methods.dgm import generator_dcgan as gen
  from dynamos_jax.methods.dgm import hat
  from dynamos_jax.methods.dgm.discriminator import Discriminator

  sys.path[:0] = [os.path.join(HERE, "stubs"), os.path.abspath(args.ref), HERE]
  import check_d
  from networks import net_DGMw

  torch.Tensor.cuda = lambda self, *a, **k: self  # their Embedding(...).cuda(), CPU here
  torch.nn.Module.cuda = lambda self, *a, **k: self
  base = torch.nn.ConvTranspose2d._output_padding  # their 1.0-signature call (run_reference)
  net_DGMw.Plastic_ConvTranspose2d._output_padding = lambda self, i, o, st, p, k, n=2, d=None: base(
    self, i, o, st, p, k, n, d
  )

  nz, smax, lamb = 128, 1e4, 0.08
  torch.manual_seed(0)
  g_t = net_DGMw.netG(nz, args.ngf, 1, smax, n_classes=1)
  g_t.last.append(net_DGMw.Plastic_ConvTranspose2d(g_t.cap_conv3[0], 1, 4, 2, 1, bias=False))
  convs = (g_t.conv1, g_t.conv2, g_t.conv3)
  for conv in convs:
    conv.ec.weight.data.normal_(0.0, 0.05)
  d_t = net_DGMw.netD(args.ndf, 1)
  rng = np.random.RandomState(0)
  z = rng.normal(size=(args.batch, nz))
  z[:, :10] = np.eye(10)[np.zeros(args.batch, int)]  # their generate_noise for class 0
  z = z.astype(np.float32)

  # Ours, from theirs.
  t = {k: v.detach().numpy().copy() for k, v in g_t.state_dict().items()}
  bns = [f"BatchNorms{l}.0" for l in (1, 2, 3)]
  params = {
    "w": tuple(jnp.asarray(c.weight.detach().numpy()) for c in convs),
    "emb": tuple(jnp.asarray(c.ec.weight.detach().numpy().reshape(c.weight.shape)) for c in convs),
    "scale": tuple(jnp.asarray(t[f"{b}.weight"])[None] for b in bns),
    "bias": tuple(jnp.asarray(t[f"{b}.bias"])[None] for b in bns),
    "head": jnp.asarray(g_t.last[0].weight.detach().numpy())[None],
  }
  stats = {
    "mean": tuple(jnp.asarray(t[f"{b}.running_mean"])[None] for b in bns),
    "var": tuple(jnp.asarray(t[f"{b}.running_var"])[None] for b in bns),
  }
  spec = gen.GeneratorSpec("w", args.ngf, nz, 1, num_tasks=1)
  counts = jnp.asarray(spec.start)
  exists = gen.weight_exist(counts, [w.shape for w in params["w"]])
  d_params, d_stats = check_d.d_variables(d_t, args.ndf)
  disc = Discriminator(num_classes=1, ndf=args.ndf)
  report = lambda name, d: print(f"{name:44s} max |diff| {float(d):.3g}")

  # Theirs: the G step of approaches/DGMw.py (t = 0, no aux term), D in train mode.
  g_t.train()
  d_t.train()
  fake_t, masks_t = g_t(torch.from_numpy(z)[:, :, None, None], 0, None, args.s)
  s_out, _ = d_t(fake_t)
  reg_t = sum(m.sum() for m in masks_t) / sum(m.numel() for m in masks_t)
  loss_t = -s_out.mean() + lamb * reg_t
  loss_t.backward()
  grads_w_t = [c.weight.grad.numpy().copy() for c in convs]
  grads_e_t = []
  for c in convs:  # their compensation, verbatim in meaning
    e = c.ec.weight.data
    num = torch.cosh(torch.clamp(args.s * e, -50, 50)) + 1
    den = torch.cosh(e) + 1
    grads_e_t.append(
      (c.ec.weight.grad * args.s_epoch / args.s * num / den).numpy().reshape(c.weight.shape)
    )
  new_t = {k: v.detach().numpy() for k, v in g_t.state_dict().items()}

  def g_loss(p):
    masks = tuple(hat.mask(e, args.s, x) for e, x in zip(p["emb"], exists))
    x, new_stats = gen.forward(spec, p, stats, jnp.asarray(z), 0, masks, counts, True)
    (critic, _), _ = disc.apply(
      {"params": d_params, "batch_stats": d_stats}, x, train=True, mutable=["batch_stats"]
    )
    reg = hat.regulariser(masks, [jnp.zeros(m.shape) for m in masks], exists)
    return -critic.mean() + lamb * reg, (x, new_stats, reg)

  (loss_o, (fake_o, new_stats, reg_o)), grads = jax.value_and_grad(g_loss, has_aux=True)(params)
  report(
    "G train images (NCHW vs NHWC)",
    np.abs(fake_t.detach().numpy() - np.asarray(fake_o).transpose(0, 3, 1, 2)).max(),
  )
  for l, b in enumerate(bns):
    moved = np.abs(new_t[f"{b}.running_var"] - t[f"{b}.running_var"]).max()
    print(f"  (their BN_0 layer {l + 1}: the running variance moved by up to {moved:.3g})")
    report(
      f"G BN_0 running mean, layer {l + 1}",
      np.abs(new_t[f"{b}.running_mean"] - np.asarray(new_stats["mean"][l][0])).max(),
    )
    report(
      f"G BN_0 running var, layer {l + 1} (both unbiased)",
      np.abs(new_t[f"{b}.running_var"] - np.asarray(new_stats["var"][l][0])).max(),
    )
  report("mask regulariser R", abs(float(reg_t.detach()) - float(reg_o)))
  report("G loss", abs(float(loss_t.detach()) - float(loss_o)))
  for l in range(3):
    g = np.asarray(grads["w"][l])
    scale = np.abs(grads_w_t[l]).max()
    report(f"grad conv{l + 1} weight (largest |g| {scale:.2g})", np.abs(grads_w_t[l] - g).max())
    ge = np.asarray(hat.compensate(grads["emb"][l], params["emb"][l], args.s, args.s_epoch))
    scale = np.abs(grads_e_t[l]).max()
    report(
      f"compensated grad conv{l + 1} emb (largest {scale:.2g})", np.abs(grads_e_t[l] - ge).max()
    )

  # Replay: eval-mode BN, s = s_max (their generation of past classes).
  g_t.eval()
  with torch.no_grad():
    replay_t, _ = g_t(torch.from_numpy(z)[:, :, None, None], 0, None, smax)
  masks = tuple(hat.mask(e, smax, x) for e, x in zip(params["emb"], exists))
  replay_o, _ = gen.forward(spec, params, new_stats, jnp.asarray(z), 0, masks, counts, False)
  report(
    "G eval images at s_max",
    np.abs(replay_t.numpy() - np.asarray(replay_o).transpose(0, 3, 1, 2)).max(),
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
