"""Exports the authors' shipped initial MLPs to .npz files that dynamos_jax reads without torch.

  TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /tmp/torchenv/bin/python reference/slni/export_initial.py \
      --ref=/tmp/slni_ref --widths=64,128 --out=/tmp/slni_init
  python -m dynamos_jax.run --config=configs/permuted_mnist.py:mas128 --workdir=... \
      --config.slni.init_weights=/tmp/slni_init/permuted_128_mnist_net.npz

--ref is a work tree of rahafaljundi/Selfless-Sequential-Learning at commit
83270c113ad17fec55b7e62cb2894a7f76821a0f (its models/ folder and MNIST_Net.py,
whose class the pickled models need). Their demos start every seed and every
method of width N from models/permuted_{N}_mnist_net.pth.tar, a whole pickled
MNIST_Net (classifier = Linear(784, N), ReLU, Linear(N, N), ReLU, Linear(N, 10)),
and put a fresh Linear(N, 10) on it before task 1 (Finetune_SLNI.py,
fine_tune_SGD_SLNI: ``if not init_freeze`` replaces classifier[4]; the demos
pass init_freeze=0). Tasks 2-5 keep that head (head_shared=True: MAS_SLNID.py
fine_MAS_acuumelation_sparce and EWC_SLNID.py fine_tune_EWC_acuumelation_sparce
skip their ``if not head_shared`` replacement). The shipped output layer is
therefore never trained or evaluated, and is not exported.

Writes OUT/permuted_{N}_mnist_net.npz per width, float32 arrays under their
state_dict names, in PyTorch's layout (weight [out, in]; dynamos_jax's Dense
kernels are the transpose, see docs/slni.md#initialisation):

  classifier.0.weight [N, 784]  classifier.0.bias [N]   -> fc1 (kernel = weight.T)
  classifier.2.weight [N, N]    classifier.2.bias [N]   -> fc2 (kernel = weight.T)

and, for the record: width (int), source (the file name), source_sha256,
head_shape ([10, N], classifier.4.weight's shape, not exported) and note (a
sentence saying why). Prints, per layer, max|w| * sqrt(fan_in): PyTorch's
default initialisation is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so untrained
layers give a value just under 1.
"""

import argparse
import hashlib
import os
import sys

WIDTHS = (8, 16, 32, 64, 128, 256, 512)
HIDDEN = ("classifier.0", "classifier.2")  # our fc1, fc2
HEAD = "classifier.4"
NOTE = (
  "classifier.4 (the output layer, Linear(N, 10)) is not exported: the authors' demos replace it "
  "with a fresh nn.Linear before task 1 (Finetune_SLNI.py fine_tune_SGD_SLNI, init_freeze=0) and "
  "share that head over tasks 2-5 (head_shared=True)"
)


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--ref", required=True, help="work tree of the authors' code at 83270c1")
  p.add_argument(
    "--widths",
    default=",".join(map(str, WIDTHS)),
    help=f"comma-separated hidden widths N among {WIDTHS} (default: all)",
  )
  p.add_argument("--out", required=True, help="directory for the .npz files (made if missing)")
  args = p.parse_args(argv)
  try:
    args.widths = [int(w) for w in args.widths.split(",") if w.strip()]
  except ValueError:
    fail(f"--widths={args.widths}: give integers, e.g. --widths=64,128")
  bad = [w for w in args.widths if w not in WIDTHS]
  if bad or not args.widths:
    fail(f"--widths: the authors ship models for {WIDTHS} only (got {args.widths})")
  if not os.path.isfile(os.path.join(args.ref, "MNIST_Net.py")):
    fail(f"--ref={args.ref}: no MNIST_Net.py; give the authors' work tree at 83270c1")
  return args


def export(ref: str, width: int, out: str) -> str:
  """Writes one width's npz; returns its path. Checks the model's class, layers and shapes."""
  import numpy as np
  import torch

  name = f"permuted_{width}_mnist_net"
  source = os.path.join(ref, "models", f"{name}.pth.tar")
  if not os.path.isfile(source):
    fail(f"{source}: missing; is --ref the authors' work tree (with models/)?")
  with open(source, "rb") as f:
    sha256 = hashlib.sha256(f.read()).hexdigest()
  # A whole pickled module (their torch.load calls predate weights_only).
  model = torch.load(source, map_location="cpu", weights_only=False)
  if type(model).__name__ != "MNIST_Net":
    fail(f"{source}: a {type(model).__name__}, not their MNIST_Net")
  state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
  expected = {
    "classifier.0.weight": (width, 784),
    "classifier.0.bias": (width,),
    "classifier.2.weight": (width, width),
    "classifier.2.bias": (width,),
    "classifier.4.weight": (10, width),
    "classifier.4.bias": (10,),
  }
  shapes = {k: v.shape for k, v in state.items()}
  if shapes != expected:
    fail(f"{source}: layers {shapes}, expected {expected} for N = {width}")
  arrays = {k: state[k] for layer in HIDDEN for k in (f"{layer}.weight", f"{layer}.bias")}
  path = os.path.join(out, f"{name}.npz")
  np.savez(
    path,
    **arrays,
    width=np.int64(width),
    source=np.str_(f"models/{name}.pth.tar"),
    source_sha256=np.str_(sha256),
    head_shape=np.array(expected[f"{HEAD}.weight"], np.int64),
    note=np.str_(NOTE),
  )
  print(f"{path}: from {source} (sha256 {sha256[:16]}...)")
  for layer in HIDDEN + (HEAD,):
    w, b = state[f"{layer}.weight"], state[f"{layer}.bias"]
    scale = w.shape[1] ** 0.5  # sqrt(fan_in)
    print(
      f"  {layer}.weight {list(w.shape)} max|w|*sqrt(fan_in) {np.abs(w).max() * scale:.4f}, "
      f"bias {list(b.shape)} max|b|*sqrt(fan_in) {np.abs(b).max() * scale:.4f}"
      + ("  (output layer: not exported)" if layer == HEAD else "")
    )
  return path


def main(argv=None):
  args = parse(argv)
  os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
  # Their MNIST_Net module must be importable for the pickled class.
  sys.path.insert(0, os.path.abspath(args.ref))
  os.makedirs(args.out, exist_ok=True)
  for width in args.widths:
    export(args.ref, width, args.out)


if __name__ == "__main__":
  main()
