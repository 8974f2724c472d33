"""Runs the authors' permuted-MNIST demo (Demo_MAS.py / Demo_EWC.py) on CPU torch, on our data.

  python reference/slni/run_reference.py --ref=/tmp/slni_ref \
      --data=/tmp/slni_ref_data --demo=mas --seed=0 --hsize=128 --workdir=/tmp/ref_mas_s0

--ref is a work tree of rahafaljundi/Selfless-Sequential-Learning at commit
83270c113ad17fec55b7e62cb2894a7f76821a0f; --data is dump_permutations.py's output.
Their algorithm is untouched. What this driver changes (see README.md here):

- data: Datasets/permuted_t{t}_dataset.pth.tar are written from our MNIST bytes and
  our seed's permutations (refdata.PermutedTask, same item format as their
  PermutedMNIST), so their create_datasets() (a torchvision download) never runs;
- Demo_*.py: the one line ``hsizes = [ 64]`` becomes ``hsizes = [HSIZE]`` (the
  commit's demos run only N = 64; the comment next to it names [128, 64]);
- CPU shims: Tensor.cuda and Module.cuda return self (their code calls .cuda()
  unconditionally in places), torch.load defaults to weights_only=False (they
  pickle whole models), torchvision is an import-only stub (stubs/);
- data loading: DataLoader over our data sets becomes refdata.TaskLoader (the same
  shuffled batches by slicing, no worker processes; --worker_loader keeps theirs);
- seeding: torch.manual_seed, random.seed and numpy.random.seed from --seed (their
  demo seeds nothing; the seed picks the new head's init and the batch order).

Writes WORKDIR/result.json: the five tasks' final accuracies (their
test_model), the average, the per-task forgetting, wall seconds, versions.
"""

import argparse
import json
import os
import random
import runpy
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEMOS = {
  "mas": ("Demo_MAS.py", "mnist_seq_acc_MAS", "mnist_seq_forgetting_MAS"),
  "ewc": ("Demo_EWC.py", None, None),
}
HSIZE_LINE = "hsizes = [ 64]"


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--ref", required=True, help="work tree of the authors' code at 83270c1")
  p.add_argument("--data", required=True, help="dump_permutations.py's output directory")
  p.add_argument("--demo", default="mas", choices=sorted(DEMOS))
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--hsize",
    type=int,
    default=128,
    choices=(8, 16, 32, 64, 128, 256, 512),
    help="hidden width (a shipped models/permuted_N_mnist_net.pth.tar)",
  )
  p.add_argument(
    "--sparse_lam", type=float, default=None, help="lambda_SSL (0: No-Reg); default: the demo's"
  )
  p.add_argument("--reg_lambda", type=float, default=None, help="lambda_Omega; default: the demo's")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument(
    "--worker_loader",
    action="store_true",
    help="keep their DataLoader(num_workers=4) (slow on 2 cores)",
  )
  p.add_argument("--workdir", required=True, help="a new directory (their code resumes from it)")
  args = p.parse_args(argv)
  demo_file = os.path.join(args.ref, DEMOS[args.demo][0])
  if not os.path.isfile(demo_file):
    fail(f"--ref={args.ref}: no {DEMOS[args.demo][0]}; give the authors' work tree at 83270c1")
  perms = os.path.join(args.data, f"permutations_seed{args.seed}.npy")
  if not os.path.isfile(perms) or not os.path.isfile(os.path.join(args.data, "mnist_uint8.npz")):
    fail(
      f"--data={args.data}: no permutations_seed{args.seed}.npy / mnist_uint8.npz; "
      "run dump_permutations.py first"
    )
  if os.path.exists(os.path.join(args.workdir, "exp")) or os.path.exists(
    os.path.join(args.workdir, "results")
  ):
    fail(
      f"--workdir={args.workdir} holds an earlier run (their code would resume it): use a new one"
    )
  return args


def prepare(args):
  """The work directory: their sources (patched demo), models/, our Datasets/."""
  import numpy as np
  import refdata
  import torch

  os.makedirs(os.path.join(args.workdir, "Datasets"), exist_ok=True)
  for name in os.listdir(args.ref):
    if name.endswith(".py") or name == "models":
      link = os.path.join(args.workdir, name)
      if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(args.ref, name)), link)
  demo = os.path.join(args.workdir, DEMOS[args.demo][0])
  with open(os.path.join(args.ref, DEMOS[args.demo][0])) as f:
    text = f.read()
  if text.count(HSIZE_LINE) != 1:
    fail(f"{DEMOS[args.demo][0]}: the line {HSIZE_LINE!r} is not there once; is --ref at 83270c1?")
  os.remove(demo)  # the symlink: the demo is the one file written, patched
  with open(demo, "w") as f:
    f.write(text.replace(HSIZE_LINE, f"hsizes = [{args.hsize}]"))
  data = np.load(os.path.join(args.data, "mnist_uint8.npz"))
  perms = np.load(os.path.join(args.data, f"permutations_seed{args.seed}.npy"))
  for t, perm in enumerate(perms):
    dsets = {
      "train": refdata.PermutedTask(data["train_images"], data["train_labels"], perm, True),
      "val": refdata.PermutedTask(data["test_images"], data["test_labels"], perm, False),
    }
    torch.save(dsets, os.path.join(args.workdir, "Datasets", f"permuted_t{t}_dataset.pth.tar"))
  return demo


def main(argv=None):
  args = parse(argv)
  os.environ.update(
    OMP_NUM_THREADS=str(args.threads),
    MKL_NUM_THREADS=str(args.threads),
    MPLBACKEND="Agg",
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
  )
  sys.path[:0] = [os.path.join(HERE, "stubs"), HERE]
  import numpy as np
  import torch

  torch.set_num_threads(args.threads)
  # CPU shims: their code moves tensors to the GPU unconditionally in places.
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  import refdata

  if not args.worker_loader:  # batches by slicing, not 4 worker processes (refdata.TaskLoader)
    torch.utils.data.DataLoader = refdata.loader(torch.utils.data.DataLoader)
  args.workdir = os.path.abspath(args.workdir)
  demo = prepare(args)
  os.chdir(args.workdir)
  sys.path.insert(0, args.workdir)
  torch.manual_seed(args.seed)
  random.seed(args.seed)
  np.random.seed(args.seed)
  argv_demo = [demo]
  if args.sparse_lam is not None:
    argv_demo += ["--sparse_lam", repr(args.sparse_lam)]
  if args.reg_lambda is not None:
    argv_demo += ["--reg_lambda", repr(args.reg_lambda)]
  sys.argv = argv_demo
  start = time.time()
  runpy.run_path(demo, run_name="__main__")
  seconds = time.time() - start
  results = {}
  for name in os.listdir("results"):
    results[name] = torch.load(os.path.join("results", name))
  net = f"permuted_{args.hsize}_mnist_net"
  acc = next(v for k, v in results.items() if "seq_acc" in k and net in k)
  forgetting = next(v for k, v in results.items() if "seq_forgetting" in k and net in k)
  ((key, per_task),) = acc.items()
  if not isinstance(per_task, list):  # their demo stores 0 / -1 when its run raised
    print(
      f"error: their demo failed (stored {per_task!r}); see the traceback above", file=sys.stderr
    )
    sys.exit(1)
  per_task = [float(a) for a in per_task]
  out = {
    "demo": args.demo,
    "seed": args.seed,
    "hsize": args.hsize,
    "setting": key,
    "per_task": per_task,
    "average": float(np.mean(per_task)),
    "forgetting": [float(f) for f in forgetting[key]],
    "seconds": seconds,
    "threads": args.threads,
    "torch": torch.__version__,
  }
  with open(os.path.join(args.workdir, "result.json"), "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
