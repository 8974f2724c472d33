"""Runs the authors' Dynamos (NeurAI-Lab/DynamicContinualLearning) on CPU torch, beside ours.

  # (a) their training step's throughput at Seq-MNIST shapes, tensors fed directly
  python run_reference.py throughput --ref=/tmp/dynamos_ref --threads=1,2 --steps=200
  # (b) their whole Seq-MNIST (buffer 500, class-IL) for one seed, on our MNIST bytes
  python run_reference.py train --ref=/tmp/dynamos_ref --seed=0 --source=files \
      --path=/path/to/mnist.pkl.gz --workdir=/tmp/ref_dynamos/seed_0
  # (b') their MNIST-360 (general continual, one final accuracy), buffer 100
  python run_reference.py train --dataset=mnist-360 --buffer_size=100 ... --workdir=...

--ref is a work tree of NeurAI-Lab/DynamicContinualLearning at commit
e6d5509bc0c96a3a503c19d0eab74ab40a345869 (README.md here says how to get one).
Their files are not changed. What this driver adds around them (README.md here):

- imports: torchvision is stubs/torchvision (their MNIST layout over our arrays,
  ToTensor, Compose, MNIST-360's PIL rotation); their modules are imported from
  --ref with --ref as the working directory (their models/__init__.py lists ``models/``);
- (b) runs their main_policy.py itself (``--load_best_args``: Table 5), with
  MNIST from our loader (refdata.mnist_arrays: the ``files`` / ``bundled``
  source, the bytes a dynamos_jax run reads); their DataLoader(num_workers=4)
  runs with num_workers=0 (the same batches and RNG draws, no worker
  processes; --worker_loader keeps theirs); their evaluate, train and
  observe are wrapped to record, never to change, what they compute; writes
  WORKDIR/results.json shaped like ours (class_il / task_il matrices and
  ``before``, metrics by dynamos_jax.metrics, train seconds, a chunked log);
  for mnist-360 their general-continual loop (utils/policy_continual_training.py)
  runs instead, on their MNIST360 stream (loaders already in-process), and
  results.json holds ``gcl`` / ``metrics`` as ours plus per-class counts;
- (a) builds their model and Dynamos learner as their main does (best args of
  seq-mnist at --buffer_size), fills the buffer (every slot written, the
  reservoir counter at 5x capacity, as speed/throughput.py does), and
  times their ``observe`` (forwards, loss, backward, SGD step, buffer insertion)
  on synthetic images fed as tensors.
"""

import argparse
import hashlib
import json
import os
import platform
import runpy
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))  # this repository: dynamos_jax, for refdata
REPO = "github.com/NeurAI-Lab/DynamicContinualLearning"
COMMIT = "e6d5509bc0c96a3a503c19d0eab74ab40a345869"
# Git blob ids at COMMIT of the files this driver runs: a mismatch is reported.
BLOBS = {
  "main_policy.py": "ba9b98f91964e25bbf364b9aeefdc0dd990c1976",
  "models/dynamos.py": "04b626fc5837d4dffee5e8a8c5fd64fdc50db39f",
  "models/dynamos_sgd.py": "959d42141810a34b2daec8502045a6f12e9f50e3",
  "models/utils/continual_model.py": "572cb4a2d9a13956e7b8187acac00ec2b82fa082",
  "backbone/GatedResNet.py": "fce834a18175b08074598d8a2cfb15127751ab44",
  "backbone/TinyResNet18.py": "1a0fbe4e1e98d91a36072ed7e08e6d67f529a96a",
  "backbone/__init__.py": "d41e56b508718465457ec4d534fb6e6717b6c1ce",
  "utils/buffer.py": "ccc3cdf2b179d501160431dbfa676248d299997c",
  "utils/policy_training.py": "5d1537896fdf32b62ad974e98c7586d14f66b402",
  "utils/policy_losses.py": "e19a70f1682ad0b1add12d4beed8579b76397a0d",
  "utils/best_args.py": "abbb97ba591048616323be2fa2c060f8e1162d0d",
  "utils/args.py": "cb89392797eeb0576439a091ba7afb7ece9df46a",
  "utils/conf.py": "e1700b3eedb10fe5129ca19cbe4fb04d009ab328",
  "datasets/seq_mnist.py": "73995fc2bdc4956c159e959e07aaa381e6c6b8f0",
  "datasets/utils/continual_dataset.py": "ae95d19f2823abaf9f9f4d2e7641ff6ba655fb60",
  # MNIST-360 (train --dataset=mnist-360)
  "datasets/__init__.py": "71af45d686307385e351f3e8612a29163d073142",
  "datasets/mnist_360.py": "de95eb0ce450eef6fbf8f1299cc5c50ba8a287ba",
  "datasets/transforms/rotation.py": "80f82b64020129590aeb8669f47e6d603166967d",
  "utils/policy_continual_training.py": "ee2b25be709e3b3652517fe78d8b98f14dab2073",
  "utils/status.py": "4e3a37e973b9aa4490f96716c6e295d6cb95c3a2",
  "utils/loggers.py": "069d12a01d0f9dcea559588388a1cf7bea7c7fd9",
}
# Their best_args rows per dataset (Table 5).
BUFFERS = {"seq-mnist": (500, 1000, 2000), "mnist-360": (100, 200, 500)}
NUM_TASKS = 5
THRESHOLD = 0.5  # their evaluate's default gate threshold (their GCL train calls it so)
POOL = 4000  # synthetic images for (a), as speed/throughput.py


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="command", required=True)
  summary = sub.add_parser("summary", help="per-seed table and mean +- std of results.json files")
  summary.add_argument(
    "files",
    nargs="+",
    help="results.json files: theirs (one seed each) or ours (one or several seeds)",
  )
  for name in ("throughput", "train"):
    s = sub.add_parser(name)
    s.add_argument("--ref", required=True, help=f"work tree of {REPO} at {COMMIT[:7]}")
    s.add_argument(
      "--buffer_size",
      type=int,
      default=500,
      help="their best_args rows: seq-mnist 500 / 1000 / 2000, mnist-360 100 / 200 / 500",
    )
    s.add_argument("--seed", type=int, default=0)
  t = sub.choices["throughput"]
  t.add_argument("--threads", default="1,2", help="torch.set_num_threads values, one case each")
  t.add_argument("--steps", type=int, default=200, help="steps per timed repeat")
  t.add_argument("--repeats", type=int, default=3)
  t.add_argument("--warmup_steps", type=int, default=20)
  t.add_argument("--out", default="", help="also write the cases as JSON here")
  r = sub.choices["train"]
  r.add_argument(
    "--dataset",
    default="seq-mnist",
    choices=tuple(BUFFERS),
    help="seq-mnist (class-IL, 5 tasks) or mnist-360 (general continual)",
  )
  r.add_argument(
    "--source",
    default="files",
    choices=("files", "bundled"),
    help="our MNIST source (dynamos_jax.data.sources)",
  )
  r.add_argument("--path", default=None, help="mnist.pkl.gz or IDX directory (source files)")
  r.add_argument("--workdir", required=True, help="a new directory: results.json, their outputs")
  r.add_argument("--threads", type=int, default=2)
  r.add_argument(
    "--max_steps_per_task",
    type=int,
    default=0,
    help="seq-mnist: stop each task's epoch after this many steps (0: all); smoke only",
  )
  r.add_argument(
    "--max_steps",
    type=int,
    default=0,
    help="mnist-360: end their stream after this many steps (0: all); smoke only",
  )
  r.add_argument("--log_every", type=int, default=100, help="steps per log entry")
  r.add_argument(
    "--worker_loader",
    action="store_true",
    help="keep their DataLoader(num_workers=4) (worker processes)",
  )
  r.add_argument(
    "--bn_from_buffer",
    action="store_true",
    help="mnist-360: after their run, re-estimate BN statistics from their final "
    "buffer and evaluate again over the same test batches (gcl_bn_from_buffer)",
  )
  args = p.parse_args(argv)
  if args.command == "summary":
    return args
  if not os.path.isfile(os.path.join(args.ref, "main_policy.py")):
    fail(f"--ref={args.ref}: no main_policy.py; give a work tree of {REPO} at {COMMIT[:7]}")
  if args.command == "throughput":
    try:
      args.threads = [int(x) for x in args.threads.split(",")]
    except ValueError:
      fail(f"--threads={args.threads!r}: give comma-separated integers, e.g. 1,2")
    if args.steps < 1 or args.repeats < 1 or args.warmup_steps < 0:
      fail("--steps and --repeats must be >= 1, --warmup_steps >= 0")
    args.out = os.path.abspath(args.out) if args.out else ""  # the driver changes directory
    if args.buffer_size not in BUFFERS["seq-mnist"]:
      fail(
        f"--buffer_size={args.buffer_size}: throughput takes seq-mnist's "
        f"{', '.join(map(str, BUFFERS['seq-mnist']))}"
      )
  else:
    if args.buffer_size not in BUFFERS[args.dataset]:
      fail(
        f"--buffer_size={args.buffer_size}: their {args.dataset} best args have "
        f"{', '.join(map(str, BUFFERS[args.dataset]))}"
      )
    gcl = args.dataset == "mnist-360"
    if gcl and (args.max_steps_per_task or args.worker_loader):
      fail(
        "--max_steps_per_task and --worker_loader are for seq-mnist (their MNIST-360 "
        "loaders already run in the main process); use --max_steps"
      )
    if not gcl and args.bn_from_buffer:
      fail("--bn_from_buffer is for mnist-360")
    if not gcl and args.max_steps:
      fail("--max_steps is for mnist-360; seq-mnist takes --max_steps_per_task")
    if os.path.exists(os.path.join(args.workdir, "results.json")) or os.path.exists(
      os.path.join(args.workdir, "out")
    ):
      fail(f"--workdir={args.workdir} holds an earlier run (their CSV log appends): use a new one")
    if args.max_steps_per_task < 0 or args.max_steps < 0 or args.log_every < 1:
      fail("--max_steps_per_task and --max_steps must be >= 0, --log_every >= 1")
  return args


def tree_check(ref):
  """Names the files of --ref that differ from the pinned commit (empty: all match)."""
  changed = []
  for name, blob in BLOBS.items():
    try:
      with open(os.path.join(ref, name), "rb") as f:
        data = f.read()
    except OSError:
      changed.append(name)
      continue
    if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != blob:
      changed.append(name)
  if changed:
    print(f"warning: --ref differs from {COMMIT[:7]} in {', '.join(changed)}", file=sys.stderr)
  return changed


def machine(torch):
  """The CPU (model name, family / model: Zen 3 is 25 / 1, Zen 4 25 / 17; AVX-512 or not)."""
  info = {}
  with open("/proc/cpuinfo") as f:
    for line in f:
      key, _, value = line.partition(":")
      info.setdefault(key.strip(), value.strip())
  cpu = (
    f"{info.get('model name', platform.processor())} (family {info.get('cpu family', '?')} "
    f"model {info.get('model', '?')}, "
    f"{'AVX-512' if 'avx512f' in info.get('flags', '').split() else 'no AVX-512'})"
  )
  return {
    "cpu": cpu,
    "cpus": os.cpu_count(),
    "torch": torch.__version__,
    "python": platform.python_version(),
    "loadavg": os.getloadavg(),
  }


def enter(ref, threads):
  """Makes their modules importable (stub torchvision first) with --ref the working directory."""
  os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MPLBACKEND="Agg")
  sys.dont_write_bytecode = True  # leave their tree as it was
  ref = os.path.abspath(ref)
  sys.path[:0] = [os.path.join(HERE, "stubs"), ref]
  os.chdir(ref)
  import torch

  torch.set_num_threads(threads)
  return torch


def their_args(buffer_size, seed, extra=()):
  """The Namespace their main builds with --load_best_args for seq-mnist / dynamos."""
  from argparse import ArgumentParser

  from utils.args import add_management_args, add_policy_args
  from utils.best_args import best_args

  parser = ArgumentParser(allow_abbrev=False)
  parser.add_argument("--model", required=True)
  parser.add_argument("--load_best_args", action="store_true")
  add_management_args(parser)
  parser.add_argument("--dataset", required=True)
  parser.add_argument("--data-path", required=True)
  parser.add_argument("--buffer_size", type=int, required=True)
  add_policy_args(parser)
  args = parser.parse_args(
    [
      "--model",
      "dynamos",
      "--load_best_args",
      "--dataset",
      "seq-mnist",
      "--data-path",
      "unused/",
      "--buffer_size",
      str(buffer_size),
      "--seed",
      str(seed),
      "--save-path",
      "unused",
      *extra,
    ]
  )
  for key, value in best_args["seq-mnist"]["dynamos"][buffer_size].items():
    setattr(args, key, value)
  return args


# ------------------------------------------------------------------- (a) throughput


def throughput_case(torch, threads, args):
  """Steps/s of their observe() at Seq-MNIST shapes with a full buffer, `threads` threads."""
  from backbone import get_classifier
  from datasets.seq_mnist import SequentialMNIST
  from models import get_model
  import numpy as np
  from utils.conf import set_random_seed
  from utils.policy_losses import filter_loss

  torch.set_num_threads(threads)
  a = their_args(args.buffer_size, args.seed)
  set_random_seed(a.seed)
  net = get_classifier(nclasses=10, policy=True, args=a)
  model = get_model(a, net, filter_loss, SequentialMNIST.get_transform())
  model.net.to(model.device)
  model.net.train()
  model.net.set_warmup(False)  # after the 10 warm-up iterations, as late in a run
  rng = np.random.default_rng(a.seed)
  grey = rng.integers(0, 256, (POOL, 28, 28), dtype=np.uint8)
  images = torch.from_numpy(np.repeat(grey[:, None], 3, axis=1)).float().div(255)
  labels = torch.from_numpy(rng.integers(0, 10, POOL))
  m = a.buffer_size
  fill = torch.randperm(POOL)[:m]
  # Logits whose argmax is the label: add-if-correct writes every slot.
  logits = torch.nn.functional.one_hot(labels[fill], 10).float() * 10
  model.buffer.add_data(
    examples=images[fill], labels=labels[fill], logits=logits, policy_logits=torch.randn(m, 256)
  )
  model.buffer.num_seen_examples = 5 * m
  b = a.batch_size
  order = iter(())
  prototype_steps = [0, 0]

  def step():
    nonlocal order
    index = next(order, None)
    if index is None:
      order = iter(torch.randperm(POOL)[: POOL // b * b].view(-1, b))
      index = next(order)
    x, y = images[index], labels[index]
    losses = model.observe(x, y, x)
    prototype_steps[0] += "Prototype_loss" in losses
    prototype_steps[1] += "Buf_Prototype_loss" in losses

  for _ in range(args.warmup_steps):
    step()
  prototype_steps[:] = [0, 0]
  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      step()
    rates.append(args.steps / (time.perf_counter() - start))
  timed = args.steps * args.repeats
  return {
    "threads": threads,
    "steps_per_second": statistics.median(rates),
    "repeats": rates,
    "ms_per_step": 1000 / statistics.median(rates),
    "batch": b,
    "minibatch": a.minibatch_size,
    "buffer": m,
    "timed_steps": timed,
    "prototype_fraction": prototype_steps[0] / timed,
    "replay_prototype_fraction": prototype_steps[1] / timed,
  }


def throughput(args):
  torch = enter(args.ref, max(args.threads))
  changed = tree_check(".")
  info = {**machine(torch), "reference": REPO, "commit": COMMIT, "changed_files": changed}
  cases = [throughput_case(torch, t, args) for t in args.threads]
  info["loadavg_after"] = os.getloadavg()
  print(
    f"their Dynamos step, seq-mnist buffer {args.buffer_size}, batch 10 + replay 10; "
    f"{info['cpu']}, torch {info['torch']}, load {info['loadavg'][0]:.2f}"
  )
  print("threads  steps/s  ms/step  repeats")
  for c in cases:
    print(
      f"{c['threads']:>7}  {c['steps_per_second']:7.2f}  {c['ms_per_step']:7.1f}  "
      + " ".join(f"{r:.2f}" for r in c["repeats"])
    )
  print(
    "prototype loss computed in "
    + ", ".join(
      f"{c['prototype_fraction']:.0%} / {c['replay_prototype_fraction']:.0%}" for c in cases
    )
    + " of timed steps (current / replay; random labels)"
  )
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"machine": info, "cases": cases}, f, indent=1)


# ------------------------------------------------------------------------ (b) train


def train(args):
  sys.path[:0] = [HERE, ROOT]
  import refdata
  import trainhooks

  from dynamos_jax.errors import DataError

  try:
    arrays = refdata.mnist_arrays(args.source, args.path)
  except DataError as e:
    fail(str(e))
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  torch = enter(args.ref, args.threads)
  changed = tree_check(".")
  import torchvision

  torchvision.datasets.MNIST.install(*arrays)
  gcl = args.dataset == "mnist-360"
  if gcl:
    # Their main sends a GCL dataset to utils.policy_continual_training.train.
    import datasets.mnist_360 as mnist_360
    import utils.policy_continual_training as loop

    rec = trainhooks.GclRecorder(
      torch, args.log_every, mnist_360.MNIST360.N_CLASSES, keep_test=args.bn_from_buffer
    )
    rec.dataset(mnist_360.MNIST360, args.max_steps)
  else:
    import datasets.utils.continual_dataset as continual_dataset
    import utils.policy_training as loop

    continual_dataset.DataLoader = trainhooks.capped_loader(
      torch, args.max_steps_per_task, None if args.worker_loader else 0
    )
    rec = trainhooks.Recorder(torch, args.log_every)
  loop.evaluate = rec.evaluate(loop.evaluate)
  loop.train = rec.train(loop.train)
  info = {**machine(torch), "threads": args.threads}
  sys.argv = [
    "main_policy.py",
    "--model",
    "dynamos",
    "--load_best_args",
    "--dataset",
    args.dataset,
    "--data-path",
    workdir + "/",
    "--buffer_size",
    str(args.buffer_size),
    "--seed",
    str(args.seed),
    "--save-path",
    os.path.join(workdir, "out"),
    "--exp-name",
    f"seed_{args.seed}",
    "--csv_log",
  ]
  start = time.time()
  runpy.run_path("main_policy.py", run_name="__main__")
  wall = time.time() - start
  rec.log.flush()
  record = (
    refdata.gcl_record(rec.accuracy, rec.correct, rec.total)
    if gcl
    else refdata.accuracy_record(rec.calls, NUM_TASKS)
  )
  if args.bn_from_buffer:
    # After their run: their evaluation, CSV and saved model are already written.
    record["gcl_bn_from_buffer"] = bn_from_buffer(refdata, rec, record)
  config = {k: v for k, v in vars(rec.args).items() if isinstance(v, (int, float, str, bool))}
  out = {
    "reference": {
      "repo": REPO,
      "commit": COMMIT,
      "changed_files": changed,
      "data": {
        "source": args.source,
        "path": args.path,
        "train": len(arrays[1]),
        "test": len(arrays[3]),
      },
      "dataset": args.dataset,
      **(
        {"max_steps": args.max_steps}
        if gcl
        else {
          "max_steps_per_task": args.max_steps_per_task,
          "num_workers": "theirs (4)" if args.worker_loader else 0,
        }
      ),
    },
    "config": config,
    "seed": args.seed,
    **record,
    "train": {
      "steps": rec.steps,
      "seconds": rec.train_seconds,
      "steps_per_second": rec.steps / max(rec.train_seconds, 1e-9),
      "eval_seconds": rec.eval_seconds,
      "wall_seconds": wall,
      **info,
      "loadavg_after": os.getloadavg(),
    },
    "buffer": rec.buffers,
    "log": rec.log.entries,
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f, indent=1)
  if gcl:
    if args.bn_from_buffer:
      bn = record["gcl_bn_from_buffer"]
      print(
        f"seed {args.seed}: BN from the buffer: GCL {bn['accuracy']:.2f} "
        f"({bn['delta']:+.2f}; replay of theirs matches: {bn['replay_matches']})"
      )
    print(
      f"seed {args.seed}: GCL {record['gcl']['accuracy']:.2f} (mnist-360, buffer "
      f"{args.buffer_size}); {rec.steps} steps in {rec.train_seconds:.1f} s "
      f"({out['train']['steps_per_second']:.2f} steps/s); "
      f"{os.path.join(workdir, 'results.json')}"
    )
    return
  c, t = record["class_il"], record["task_il"]
  print(
    f"seed {args.seed}: class-IL {c['final_average']:.2f} / task-IL {t['final_average']:.2f}"
    f" after {len(c['matrix']) - 1} tasks; {rec.steps} steps in {rec.train_seconds:.1f} s "
    f"({out['train']['steps_per_second']:.2f} steps/s); {os.path.join(workdir, 'results.json')}"
  )


def bn_from_buffer(refdata, rec, record):
  """Their final model with BN statistics from their final buffer, evaluated as theirs was.

  First their evaluate over the recorded test batches with the model unchanged
  (it should give their figure again: the check that the replay is their
  evaluation), then ``GclRecorder.bn_from_buffer`` and the same evaluation.
  """
  start = time.perf_counter()
  replayed = refdata.gcl_record(*rec.replay_evaluate(THRESHOLD))
  done = rec.bn_from_buffer(refdata.BN_BATCHES, refdata.BN_SIZE, refdata.BN_SEED, THRESHOLD)
  reestimated = refdata.gcl_record(*rec.replay_evaluate(THRESHOLD))
  return refdata.bn_from_buffer_record(
    record,
    replayed,
    reestimated,
    **done,
    replayed_accuracy=replayed["gcl"]["accuracy"],
    seconds=time.perf_counter() - start,
  )


def summary(args):
  sys.path[:0] = [HERE, ROOT]
  import refdata

  records = []
  for name in args.files:
    try:
      with open(name) as f:
        record = json.load(f)
    except (OSError, ValueError) as e:
      fail(f"{name}: not a readable results.json ({e})")
    if "runs" in record:  # ours with several seeds: one record per seed
      records += record["runs"]
    else:
      records.append({"seed": record.get("config", {}).get("seed", "?"), **record})
  if records and all("gcl" in r and "metrics" in r for r in records):
    print(refdata.gcl_seed_table(records))  # MNIST-360
    return
  if any("class_il" not in r or "metrics" not in r for r in records):
    fail(
      "give results.json files of runs of one kind (class_il or gcl, with metrics): "
      "theirs, or ours of one or several seeds"
    )
  print(refdata.seed_table(records))


def main(argv=None):
  args = parse(argv)
  {"throughput": throughput, "train": train, "summary": summary}[args.command](args)


if __name__ == "__main__":
  main()
