"""Runs the authors' DGMw or DGMa (SAP-archive/machine-learning-dgm) on CPU torch, on our images.

  python reference/dgm/dump_data.py --seed=0 --out=/tmp/dgm_ref_data/quick_seed0.npz
  nice -n 10 /tmp/torchenv/bin/python reference/dgm/run_reference.py \
      --ref=/tmp/dgm_ref --data=/tmp/dgm_ref_data/quick_seed0.npz --tasks=4 \
      --workdir=/tmp/ref_dgm/quick_t4 > /tmp/ref_dgm/quick_t4.log 2>&1
  nice -n 10 /tmp/torchenv/bin/python reference/dgm/run_reference.py --variant=a \
      --ref=/tmp/dgm_ref --data=/tmp/dgm_ref_data/quick_seed0.npz --tasks=4 \
      --workdir=/tmp/ref_dgm/quick_a_t4 > /tmp/ref_dgm/quick_a_t4.log 2>&1

``--variant`` picks what their ``run.py --method`` picks (MNIST): ``w`` (default)
runs ``approaches/DGMw.py``, ``networks/net_DGMw.py`` with ``cfg/cfg_mnist_dgmw.yml``;
``a`` runs ``approaches/DGMa.py``, ``networks/net_DGMa.py`` with
``cfg/cfg_mnist_dgma.yml``. Both use their ``utils/utils.py`` and ``utils/logger.py``.

--ref is a work tree of the authors' repository at commit
c055598b9b8c4e62c00afc520b9789bfb25d2ae6 (README.md here). Their files are not
changed and not copied; the driver checks their git blob ids. What it does
around them (README.md here lists each item and why):

- it does what their ``run.py`` does (seeds ``random``, ``torch``, ``numpy``
  from ``manualSeed``; ``netG`` / ``netD`` / ``App`` of the variant's network and
  approach from its yml; ``App.train(data, t)`` for t = 0, 1, ...), with
  configs/dgm_quick.py's departures (epochs, batch, ndf: from the dump's meta,
  or --epochs / --batch / --ndf) passed as arguments instead of editing their
  config, and ``--tasks`` to stop early;
- ``data`` (their dict of per-task tensors) is built from the dump of our run
  (refdata.task_arrays) instead of their Keras loader, so both libraries train
  on the same images in the same batch order, validate and test on the same;
- imports: ``torchvision`` and ``tensorflow`` are stubs/ (save_image as a PNG;
  the TF-1 summary writer recording scalars in memory, read back here);
- torch 2.x vs their torch 1.0.0: the shims of ``torch10_compat``; numpy 2.x vs
  their 1.14.5: ``numpy114_compat`` (their Logger's histograms);
- after each task it evaluates their D once more, in eval mode, on each seen
  class's test images (exact per-class accuracy and what D predicts), which
  changes nothing in their state; writes WORKDIR/result.json after every task.
"""

import argparse
import hashlib
import importlib
import json
import os
import platform
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = "github.com/SAP-archive/machine-learning-dgm"
COMMIT = "c055598b9b8c4e62c00afc520b9789bfb25d2ae6"
# Git blob ids at COMMIT of the files that run for DGMw (run.py is mirrored, not run).
BLOBS = {
  "approaches/DGMw.py": "84c857fbee882dd26f84e8df11da43bdbdd5aa63",
  "networks/net_DGMw.py": "cdcf1ca0ed1057c08181227f451da43188003fd6",
  "utils/utils.py": "d3f8ca1c6961258cd33bb74ffd27469e16fc1387",
  "utils/logger.py": "2158760118c6206b4e98b84915b952d5c54d27bc",
  "cfg/cfg_mnist_dgmw.yml": "7bcd7f0a7bad17ab9be504f8a536328d301a6482",
  "run.py": "2038b8e1b5c447531766e7bd3c6d28dfb8c0bdf9",
}
# DGMa's: its approach, network and config in place of DGMw's, the rest shared.
BLOBS_DGMA = {
  "approaches/DGMa.py": "9972f955ed0c46107e12a67406961c7ee40cd1ab",
  "networks/net_DGMa.py": "cd21ee052a1c1793e0da8b1b9aedb00f3c095c44",
  "cfg/cfg_mnist_dgma.yml": "9c78b7e4c30878b462cb6aa8cf3366ed9ad8567e",
  **{p: BLOBS[p] for p in ("utils/utils.py", "utils/logger.py", "run.py")},
}
# What their run.py imports and reads for --method DGMw / DGMa on MNIST: (approach
# module, network module, config file). Both ymls have the same keys.
VARIANTS = {
  "w": ("approaches.DGMw", "networks.net_DGMw", "cfg/cfg_mnist_dgmw.yml"),
  "a": ("approaches.DGMa", "networks.net_DGMa", "cfg/cfg_mnist_dgma.yml"),
}
VARIANT_BLOBS = {"w": BLOBS, "a": BLOBS_DGMA}
# In-task evaluation period of their train loop (``epoch % k == 0``): DGMw.py 2, DGMa.py 5.
EVAL_EVERY = {"w": 2, "a": 5}
NB_LABEL = 10  # run.py: nb_label, the one-hot prefix of z
NC = 1  # run.py: MNIST's channels


def git_blob_id(path: str) -> str:
  with open(path, "rb") as f:
    body = f.read()
  return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


def changed_files(ref: str, variant: str = "w") -> list[str]:
  """The variant's files that are missing from ``ref`` or differ from COMMIT's."""
  return [
    p
    for p, blob in VARIANT_BLOBS[variant].items()
    if not os.path.exists(os.path.join(ref, p)) or git_blob_id(os.path.join(ref, p)) != blob
  ]


def their_config(ref: str, variant: str, meta: dict, epochs=None, batch=None, ndf=None, seed=None):
  """The variant's yml as their ``cfg_from_file`` reads it, with our departures.

  ``niter``, ``batchSize`` and ``ndf`` come from the flags or else the dump's meta
  (the run we compare with), ``manualSeed`` from ``seed`` if given; every other
  key is the yml's. Read with ``yaml.safe_load`` (no easydict here).
  """
  import yaml

  with open(os.path.join(ref, VARIANTS[variant][2])) as f:
    cfg = yaml.safe_load(f)
  cfg["niter"] = epochs or meta["epochs"]
  cfg["batchSize"] = batch or meta["batch_size"]
  cfg["ndf"] = ndf or meta["ndf"]
  if seed is not None:
    cfg["manualSeed"] = seed
  return cfg


def torch10_compat(torch, model_module) -> list[str]:
  """Makes torch 2.x behave as their pinned torch 1.0.0 where their code depends on it.

  Returns the list of what was changed (recorded in result.json).
  """
  import torch.nn as nn
  from torch.nn.modules import batchnorm

  # 1. CPU: their code calls .cuda() unconditionally in places (net_DGMw.py's
  #    Embedding(...).cuda(), LongTensor([t]).cuda(), DGMw.py's .cuda(self.device);
  #    net_DGMa.py's Parameter(torch.Tensor(...).cuda()) when G grows).
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  nn.Module.cuda = lambda self, *args, **kwargs: self

  # 2. ConvTranspose2d._output_padding gained a required num_spatial_dims
  #    argument after 1.0; their transposed convolutions' forward calls it with
  #    the 1.0 signature (net_DGMw.py's Plastic_ConvTranspose2d, net_DGMa.py's own
  #    ConvTranspose2d subclass). With output_size None it returns self.output_padding.
  base = nn.ConvTranspose2d._output_padding

  def output_padding(
    self, input, output_size, stride, padding, kernel_size, num_spatial_dims=2, dilation=None
  ):
    return base(self, input, output_size, stride, padding, kernel_size, num_spatial_dims, dilation)

  transposed = [
    name
    for name, c in vars(model_module).items()
    if isinstance(c, type)
    and issubclass(c, nn.ConvTranspose2d)
    and c.__module__ == model_module.__name__
  ]
  if not transposed:
    raise RuntimeError(f"{model_module.__name__}: no ConvTranspose2d subclass to shim")
  for name in transposed:
    getattr(model_module, name)._output_padding = output_padding

  # 3. zero_grad: torch 1.0 zeroed existing gradients; 2.x sets them to None.
  #    With None, Adam skips a parameter; with zeros (1.0) it still moves it by
  #    its momentum and counts the step: D's critic head in the CE steps, its aux
  #    head in the WGAN-GP step.
  zero_grad = nn.Module.zero_grad
  nn.Module.zero_grad = lambda self, set_to_none=False: zero_grad(self, set_to_none)
  optimizer_zero_grad = torch.optim.Optimizer.zero_grad
  torch.optim.Optimizer.zero_grad = lambda self, set_to_none=False: optimizer_zero_grad(
    self, set_to_none
  )

  # 4. A new BatchNorm's scale: U(0, 1) in 1.0 (gamma = 1 from 1.2 on). Their G
  #    makes a fresh BatchNorm2d per layer for every later task (netG.extand, in
  #    both networks) at the default init, so tasks 1.. start from U(0, 1) scales
  #    in their runs.
  def reset_parameters(self):
    self.reset_running_stats()
    if self.affine:
      nn.init.uniform_(self.weight)
      nn.init.zeros_(self.bias)

  batchnorm._NormBase.reset_parameters = reset_parameters

  # 5. x.data.resize_(...): in 1.0 ``.data`` shared the tensor itself, so their
  #    App resizes its buffers (input_, c_label, noise) with
  #    ``self.input_.data.resize_(size).copy_(...)``; in 2.x ``.data`` is a new
  #    alias whose resize leaves the buffer at its old shape (their D then sees
  #    a [B, 3, 32, 32] tensor). For a tensor that needs no gradient ``.data``
  #    returns the tensor itself, as 1.0 behaved; a tensor that needs one (a
  #    parameter, a graph output) gets the usual detached alias.
  data = torch._C.TensorBase.data

  def data_get(self):
    return self if not self.requires_grad else data.__get__(self)

  torch.Tensor.data = property(data_get, data.__set__)

  # 6. Tensor.numpy(): in 2.x it marks the tensor's storage as not resizable
  #    (the array aliases it), so the next ``self.c_label.data.resize_`` to a
  #    larger size fails ("Trying to resize storage that is not resizable");
  #    1.0 had no such lock. Every array their DGMw.py and DGMa.py take this way
  #    is read at once (labels for the one-hot noise and, in DGMa, for its
  #    replayed sets; accuracies, histograms), never after the tensor changes,
  #    so the array of a clone gives the same values.
  numpy = torch.Tensor.numpy
  torch.Tensor.numpy = lambda self, *args, **kwargs: numpy(self.clone(), *args, **kwargs)
  return [
    "Tensor.cuda / Module.cuda return self",
    *(f"{name}._output_padding: 1.0 signature" for name in transposed),
    "Module/Optimizer.zero_grad zero gradients (set_to_none=False), as 1.0",
    "BatchNorm default init gamma ~ U(0, 1), as 1.0",
    "Tensor.data is the tensor itself when it needs no gradient (1.0's resize_ via .data)",
    "Tensor.numpy returns a clone's array (2.x locks the storage of an exported tensor)",
  ]


def numpy114_compat(logger_module) -> list[str]:
  """Makes numpy 2.x behave as their pinned numpy 1.14.5 where their code depends on it.

  Their ``Logger.histo_summary`` bins a G mask into 1,000 bins with np.histogram.
  numpy 2.2 on (numpy#27148) raises "Too many bins for data range" when the edges,
  computed in the mask's float32, are not all distinct; earlier numpy, their 1.14.5
  too, returned such zero-width bins without complaint. DGMa's masks hit it: in
  its first epochs the scale s is ~1 / s_max = 1e-5, so every gate sits within
  ~1e-7 of 0.5. The values are passed on as float64, where the edges are
  distinct; the histogram itself is dropped by stubs/tensorflow either way, so
  nothing recorded changes.
  """
  import numpy as np

  histo_summary = logger_module.Logger.histo_summary

  def histo_summary_float64(self, tag, values, step, bins=1000):
    return histo_summary(self, tag, np.asarray(values, np.float64), step, bins)

  logger_module.Logger.histo_summary = histo_summary_float64
  return ["Logger.histo_summary bins float64 values (numpy >= 2.2 raises on float32 edges)"]


def their_data(tasks, torch) -> dict:
  """Their ``data`` dict (``dataloaders/split_MNIST.get``'s layout) from our arrays."""
  data = {}
  for t, entry in enumerate(tasks):
    data[t] = {"name": str(t), "ncla": 1}
    for split in ("train", "valid", "test"):
      data[t][split] = {
        "x": torch.from_numpy(entry[f"{split}_x"].copy()),
        "y": torch.from_numpy(entry[f"{split}_y"].astype("int64")),
      }
  return data


def exact_predictions(net_d, tasks, t, torch, batch=500) -> list:
  """D's argmax (eval mode, over its t + 1 outputs) on each seen class's test images.

  Eval-mode forwards under no_grad touch no state of theirs (their BatchNorm2d
  uses momentum 0 in eval, and nothing draws random numbers); D is put back in
  train mode, as their ``valid`` leaves it.
  """
  net_d.eval()
  preds = []
  with torch.no_grad():
    for c in range(t + 1):
      x = torch.from_numpy(tasks[c]["test_x"])
      out = [net_d(x[i : i + batch])[1].argmax(1) for i in range(0, len(x), batch)]
      preds.append(torch.cat(out).numpy())
  net_d.train()
  return preds


def reestimated_bn_predictions(net_d, tasks, t, torch, batch: int, seed: int = 1) -> list:
  """A diagnostic that uses real past data: D's argmax with its BatchNorm statistics
  re-estimated on the real training images of classes 0..t.

  A deep copy of D (theirs is untouched) gets its running statistics reset, then
  sees the classes' real training images in shuffled mixed batches of ``batch``
  in train mode under no_grad with momentum 1 / (k + 1) at batch k (their
  BatchNorm2d passes its momentum to F.batch_norm as it is, so PyTorch's
  ``momentum=None`` cumulative mode is spelled out: each statistic ends as the
  mean of the batches'), and is evaluated as ``exact_predictions``. The shuffle uses its own
  ``RandomState(seed)``: their global numpy / torch streams are not drawn from.
  """
  import copy

  import numpy as np

  probe = copy.deepcopy(net_d)
  norms = [m for m in probe.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
  for m in norms:
    m.reset_running_stats()
  x = torch.from_numpy(np.concatenate([tasks[c]["train_x"] for c in range(t + 1)]))
  order = torch.from_numpy(np.random.RandomState(seed).permutation(len(x)))
  probe.train()
  with torch.no_grad():
    for k, i in enumerate(range(0, len(x), batch)):
      for m in norms:
        m.momentum = 1.0 / (k + 1)
      probe(x[order[i : i + batch]])
  return exact_predictions(probe, tasks, t, torch)


def cpu_name() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
  except (OSError, subprocess.CalledProcessError, StopIteration):
    return platform.processor() or "unknown"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ref", required=True, help="their work tree at COMMIT")
  parser.add_argument("--data", required=True, help="dump_data.py's .npz")
  parser.add_argument("--workdir", required=True)
  parser.add_argument(
    "--variant", default="w", choices=sorted(VARIANTS), help="their --method: DGMw (w) or DGMa (a)"
  )
  parser.add_argument("--tasks", type=int, default=10, help="stop after this many tasks")
  parser.add_argument(
    "--epochs", type=int, default=None, help="default: the dump's (dgm_quick: 20)"
  )
  parser.add_argument("--batch", type=int, default=None, help="default: the dump's (32)")
  parser.add_argument("--ndf", type=int, default=None, help="default: the dump's (16)")
  parser.add_argument("--seed", type=int, default=None, help="default: their manualSeed (0)")
  parser.add_argument("--threads", type=int, default=1)
  args = parser.parse_args(argv)

  ref = os.path.abspath(args.ref)
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  changed = changed_files(ref, args.variant)
  if changed:
    print(f"warning: files differ from {COMMIT[:12]}: {changed}", file=sys.stderr)

  sys.path.insert(0, HERE)
  import refdata  # noqa: E402

  tasks, meta = refdata.load(args.data)
  cfg = their_config(ref, args.variant, meta, args.epochs, args.batch, args.ndf, args.seed)
  num_tasks = min(args.tasks, meta["num_tasks"])

  # Their imports resolve from --ref (approaches, networks, utils) and the stubs.
  sys.path[:0] = [os.path.join(HERE, "stubs"), ref]
  import numpy as np
  import torch

  torch.set_num_threads(args.threads)
  approach_name, model_name, cfg_file = VARIANTS[args.variant]
  approach = importlib.import_module(approach_name)  # run.py: ``from approaches import DGMx``
  model = importlib.import_module(model_name)  # run.py: ``from networks import net_DGMx``
  import tensorflow as tf_stub  # noqa: E402  (stubs/tensorflow: the scalars their Logger writes)

  shims = torch10_compat(torch, model) + numpy114_compat(importlib.import_module("utils.logger"))

  # run.py, from the seeding on.
  random.seed(cfg["manualSeed"])
  torch.manual_seed(cfg["manualSeed"])
  np.random.seed(cfg["manualSeed"])
  data = their_data(tasks, torch)
  for t in range(meta["num_tasks"]):
    for split in ("train", "test", "valid"):
      data[t][split]["y"].data.fill_(t)
  outf = os.path.join(workdir, "outputs")
  os.makedirs(os.path.join(outf, "models"), exist_ok=True)
  log_dir = os.path.join(workdir, "logs")
  os.makedirs(log_dir, exist_ok=True)
  net_g = model.netG(cfg["nz"], cfg["ngf"], NC, cfg["smax_g"], n_classes=1)
  net_d = model.netD(cfg["ndf"], NC)
  appr = approach.App(
    model,
    net_g,
    net_d,
    log_dir,
    outf,
    niter=cfg["niter"],
    batchSize=cfg["batchSize"],
    imageSize=cfg["imageSize"],
    nz=cfg["nz"],
    nb_label=NB_LABEL,
    cuda=False,
    beta1=cfg["beta1"],
    lr_D=cfg["lr_D"],
    lr_G=cfg["lr_G"],
    lamb_G=cfg["lamb_G"],
    reinit_D=cfg["reinit_D"],
    lambda_adv=cfg["lambda_adv"],
    lambda_wassersten=cfg["lambda_wasserstein"],
    dataset=cfg["dataset"],
    store_model=False,
  )

  result = {
    "reference": REPO,
    "commit": COMMIT,
    "variant": args.variant,
    "files": [
      approach_name.replace(".", "/") + ".py",
      model_name.replace(".", "/") + ".py",
      cfg_file,
    ],
    "changed_files": changed,
    "data": meta,
    "settings": {
      k: cfg[k]
      for k in (
        "niter",
        "batchSize",
        "ndf",
        "ngf",
        "nz",
        "lr_D",
        "lr_G",
        "beta1",
        "smax_g",
        "lamb_G",
        "lambda_adv",
        "lambda_wasserstein",
        "reinit_D",
        "aux_G",
        "manualSeed",
      )
    },
    "eval_every": EVAL_EVERY[args.variant],  # their in-task evaluations, in epochs
    "torch": torch.__version__,
    "threads": args.threads,
    "cpu": cpu_name(),
    "shims": shims,
    "tasks": [],
  }
  progress = open(os.path.join(workdir, "progress.txt"), "a")
  for t in range(num_tasks):
    start, first = time.time(), len(tf_stub.SCALARS)
    appr.train(data, t, smax_g=cfg["smax_g"], use_aux_G=cfg["aux_G"])
    seconds = time.time() - start
    # The test average at the task's best validation evaluation: DGMw.py's train
    # returns it, DGMa.py's returns the list of its test averages instead; both
    # keep it in this attribute (reset at the start of each train).
    best = float(appr.best_selected_test_acc)
    step = appr.global_step  # their final evaluation of the task is logged at this step
    mine = tf_stub.SCALARS[first:]  # what this task's evaluations logged
    per_class = {
      int(d.rsplit(" ", 1)[1]): v for d, tag, s, v in mine if tag == "Accuracy_test" and s == step
    }
    logged = [per_class[c] for c in range(t + 1)]
    rec = refdata.task_record(t, logged, exact_predictions(net_d, tasks, t, torch), best, seconds)
    # (their global step, validation average, test average) of each of the task's
    # evaluations: after epochs 0, k, 2 k, ... (k = EVAL_EVERY: DGMw 2, DGMa 5) and
    # the final one (their global step counts epochs, so the final one's is also the
    # next task's first: they log both at the same global step).
    rec["evaluations"] = [
      (s, v, w)
      for (_, _, s, v), (_, _, _, w) in zip(
        [x for x in mine if x[1] == "Average_Acc. valid"],
        [x for x in mine if x[1] == "Average_Acc. test"],
      )
    ]
    bn = reestimated_bn_predictions(net_d, tasks, t, torch, cfg["batchSize"])
    rec["bn_reestimated"] = {  # a diagnostic with real past images: the BN statistics' part
      "class_il": [100.0 * float(np.mean(p == c)) for c, p in enumerate(bn)],
      "predicted_counts": [np.bincount(p, minlength=t + 1).tolist() for p in bn],
    }
    rec["bn_reestimated"]["A"] = float(np.mean(rec["bn_reestimated"]["class_il"]))
    rec["g_channels"] = [
      int(net_g.conv1.weight.shape[1]),
      int(net_g.conv2.weight.shape[1]),
      int(net_g.conv3.weight.shape[1]),
    ]
    result["tasks"].append(rec)
    result["A_t"] = [r["A"] for r in result["tasks"]]
    result["A_t_logged"] = [r["A_logged"] for r in result["tasks"]]
    result["best_selected_A_t"] = [r["best_selected_A"] for r in result["tasks"]]
    with open(os.path.join(workdir, "result.json"), "w") as f:
      json.dump(result, f, indent=1)
    progress.write(
      f"task {t}: A {rec['A']:.1f} (logged {rec['A_logged']:.1f}, best-selected "
      f"{best:.1f}), class-IL {[round(a, 1) for a in rec['class_il']]}, "
      f"predicted {rec['predicted_counts']}; BN re-estimated on real images: "
      f"A {rec['bn_reestimated']['A']:.1f}; {seconds:.0f} s\n"
    )
    progress.flush()
  progress.close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
