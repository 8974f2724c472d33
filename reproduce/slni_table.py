"""SLNI on permuted MNIST: runs a list of settings (3 seeds in one program each) and prints
the table.

  python reproduce/slni_table.py --settings=mas128:slnid,mas128:no_reg,ewc128:slnid \
      --source=files --path=/path/to/mnist.pkl.gz --workdir=/tmp/slni_runs
  python reproduce/slni_table.py --report_only --workdir=/tmp/slni_runs   # all found there
  python reproduce/slni_table.py --short --source=bundled --workdir=/tmp/slni_smoke

A setting is DEMO:VARIANT[@best]: DEMO one of configs/permuted_mnist.py's
mas128, mas64, ewc128, ewc64; VARIANT a regulariser of the family, or slnid_min
(the released code's min discount), maxout / lwta (the activation, No-Reg);
@best keeps each task's best test-accuracy epoch (slni.selection=best_test_epoch,
as the authors' demo does; before it was named so, best_epoch: a results.json
saved then still counts as this setting). Each setting runs once, as

  python -m dynamos_jax.run --config=configs/permuted_mnist.py:DEMO --config.seeds=SEEDS \
      --config.slni.regularizer=... --workdir=WORKDIR/DEMO_VARIANT[_best]

and is reused when WORKDIR/.../results.json already holds the same setting.
The table (markdown, as in docs/results.md): final average accuracy mean +- std over the
seeds (std with ddof 1, as results.json), each seed's, each task's mean over the
seeds, the mean forgetting, and the training seconds of the program (all seeds;
compilation apart). Bad input: one line on stderr, exit code 2.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dynamos_jax.config import migrate  # noqa: E402  (after the path)

DEMOS = ("mas128", "mas64", "ewc128", "ewc64")
REGULARIZERS = (
  "no_reg",
  "l1_rep",
  "decov",
  "sni",
  "snid",
  "slni",
  "slnid",
  "l2_wd",
  "l1_param",
  "orthreg",
)
VARIANTS = REGULARIZERS + ("slnid_min", "maxout", "lwta")
# The settings of docs/results.md's table and of its comparison with the authors' code.
DEFAULT = (
  "mas128:slnid,mas128:slnid_min,mas128:no_reg,mas128:l1_rep,mas128:decov,"
  "mas128:l2_wd,mas128:l1_param,mas128:orthreg,mas128:maxout,mas128:lwta,mas128:sni,"
  "mas128:slni,mas128:snid,ewc128:slnid,ewc128:no_reg,mas64:slnid,mas64:no_reg,"
  "mas128:slnid@best,mas128:no_reg@best,mas128:slnid_min@best,ewc128:slnid@best,"
  "ewc128:slnid_min@best,ewc128:no_reg@best"
)
SHORT_STEPS = 20  # per task in a --short run


class InputError(Exception):
  """Bad input: main prints it on one line and exits 2."""


def parse_setting(text: str) -> tuple[str, str, bool]:
  """'mas128:slnid@best' -> ('mas128', 'slnid', True)."""
  body, _, tail = text.partition("@")
  demo, _, variant = body.partition(":")
  if demo not in DEMOS or variant not in VARIANTS or tail not in ("", "best"):
    raise InputError(
      f"setting {text!r}: use DEMO:VARIANT[@best], DEMO one of {', '.join(DEMOS)}, "
      f"VARIANT one of {', '.join(VARIANTS)}"
    )
  return demo, variant, tail == "best"


def dirname(demo: str, variant: str, best: bool) -> str:
  return f"{demo}_{variant}" + ("_best" if best else "")


def slni_overrides(variant: str, best: bool, l2_wd: float, l1_param: float) -> dict:
  """The slni.* keys a variant sets (the rest: the demo's config)."""
  out = {
    "regularizer": variant,
    "activation": "relu",
    "discount": "product",
    "selection": "best_test_epoch" if best else "last",
  }
  if variant == "slnid_min":
    out.update(regularizer="slnid", discount="min")
  elif variant in ("maxout", "lwta"):
    out.update(regularizer="no_reg", activation=variant)
  elif variant in ("l2_wd", "l1_param"):
    out["weight_decay"] = l2_wd if variant == "l2_wd" else l1_param
  return out


def command(demo, overrides, seeds, args, workdir) -> list[str]:
  cmd = [
    sys.executable,
    "-m",
    "dynamos_jax.run",
    f"--config={os.path.join(ROOT, 'configs', 'permuted_mnist.py')}:{demo}",
    f"--config.seeds={','.join(map(str, seeds))}",
    f"--config.data.source={args.source}",
    f"--workdir={workdir}",
    "--config.train.progress=False",
  ]
  if args.path:
    cmd.append(f"--config.data.path={args.path}")
  cmd += [f"--config.slni.{k}={v}" for k, v in overrides.items()]
  if args.short:
    cmd += ["--config.epochs=1", f"--config.train.max_steps_per_task={SHORT_STEPS}"]
  return cmd


def load(path: str) -> dict:
  try:
    with open(path) as f:
      results = json.load(f)
    results["runs"], results["config"]["slni"]  # noqa: B018 (the keys the table reads)
    # Under today's names, as a resumed run reads them (docs/slni.md#model-selection).
    results["config"] = migrate(results["config"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise InputError(
      f"{path}: not a readable multi-seed results.json ({e}); delete it or use another --workdir"
    ) from None
  return results


def matches(results: dict, overrides: dict, seeds: list[int], short: bool) -> bool:
  """Whether a saved results.json is this setting (its slni keys, seeds, length)."""
  saved = results["config"]
  steps = SHORT_STEPS if short else 0
  return (
    all(saved["slni"].get(k) == v for k, v in overrides.items())
    and list(results.get("seeds", [])) == list(seeds)
    and saved.get("train", {}).get("max_steps_per_task", 0) == steps
  )


def row(name: str, results: dict) -> dict:
  """One table row's numbers from results.json (class-IL = task-IL on permuted MNIST)."""
  finals = [r["class_il"]["matrix"][-1] for r in results["runs"]]
  averages = [float(np.mean(f)) for f in finals]
  forgetting = [r["metrics"]["class_il"]["forgetting"] for r in results["runs"]]
  return {
    "name": name,
    "seeds": [r["seed"] for r in results["runs"]],
    "mean": float(np.mean(averages)),
    "std": float(np.std(averages, ddof=1)) if len(averages) > 1 else 0.0,
    "per_seed": averages,
    "per_task": np.mean(finals, axis=0).tolist(),
    "forgetting": float(np.mean(forgetting)),
    "seconds": results.get("train", {}).get("seconds"),
    "compile_seconds": results.get("train", {}).get("compile_seconds"),
  }


def format_table(rows: list[dict]) -> str:
  seeds = rows[0]["seeds"] if rows else []
  span = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else ""
  lines = [
    f"| importance, width, regulariser | average (mean +- std, {span}) | per seed "
    "| per task (mean over seeds) | forgetting | training (all seeds) |",
    "|---|---|---|---|---|---|",
  ]
  for r in rows:
    seconds = "-" if r["seconds"] is None else f"{r['seconds']:.0f} s"
    lines.append(
      f"| {r['name']} | {r['mean']:.2f} +- {r['std']:.2f} | "
      + " / ".join(f"{a:.2f}" for a in r["per_seed"])
      + " | "
      + " / ".join(f"{a:.2f}" for a in r["per_task"])
      + f" | {r['forgetting']:.2f} | {seconds} |"
    )
  return "\n".join(lines)


def parse(argv) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--settings", default=DEFAULT, help="comma-separated DEMO:VARIANT[@best]")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--source", default="files", help="tfds | files | bundled")
  p.add_argument("--path", default="", help="for --source=files: mnist.pkl.gz")
  p.add_argument("--workdir", required=True, help="a directory per setting goes here")
  p.add_argument("--short", action="store_true", help=f"smoke: 1 epoch, {SHORT_STEPS} steps a task")
  p.add_argument(
    "--report_only",
    action="store_true",
    help="run nothing: the table of the settings found under --workdir",
  )
  p.add_argument("--l2_wd", type=float, default=1e-5, help="slni.weight_decay of l2_wd")
  p.add_argument("--l1_param", type=float, default=1e-5, help="slni.weight_decay of l1_param")
  p.add_argument("--json", default="", help="also write the rows to this file")
  args = p.parse_args(argv)
  try:
    args.seeds = [int(s) for s in args.seeds.split(",")]
  except ValueError:
    raise InputError(f"--seeds={args.seeds!r}: give comma-separated integers, e.g. 0,1,2") from None
  if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
    raise InputError(f"--seeds={args.seeds}: give distinct seeds >= 0")
  args.settings = [parse_setting(s.strip()) for s in args.settings.split(",") if s.strip()]
  if not args.settings:
    raise InputError("--settings is empty: name at least one DEMO:VARIANT")
  if args.source not in ("tfds", "files", "bundled"):
    raise InputError(f"--source={args.source!r}: use tfds, files or bundled")
  if args.source == "files" and not args.report_only and not os.path.exists(args.path):
    raise InputError(f"--path={args.path!r} does not exist: give mnist.pkl.gz for --source=files")
  if min(args.l2_wd, args.l1_param) < 0:
    raise InputError("--l2_wd and --l1_param must be >= 0")
  if args.report_only and not os.path.isdir(args.workdir):
    raise InputError(f"--workdir={args.workdir} is not a directory: nothing to report")
  return args


def main(argv=None) -> int:
  try:
    args = parse(argv)
    rows = []
    for demo, variant, best in args.settings:
      name = f"{demo} {variant}" + (" (best epoch)" if best else "")
      workdir = os.path.join(args.workdir, dirname(demo, variant, best))
      overrides = slni_overrides(variant, best, args.l2_wd, args.l1_param)
      path = os.path.join(workdir, "results.json")
      if os.path.exists(path):
        results = load(path)
        if not matches(results, overrides, args.seeds, args.short):
          raise InputError(
            f"{path} holds another setting (slni keys, seeds or length); use another --workdir"
          )
      elif args.report_only:
        continue
      else:
        os.makedirs(workdir, exist_ok=True)
        print(f"running {name} -> {workdir}", file=sys.stderr, flush=True)
        with open(os.path.join(workdir, "run.log"), "w") as log:
          done = subprocess.run(
            command(demo, overrides, args.seeds, args, workdir),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
          )
        if done.returncode != 0:
          raise InputError(
            f"{name}: dynamos_jax.run exited {done.returncode}; "
            f"see {os.path.join(workdir, 'run.log')}"
          )
        results = load(path)
      rows.append(row(name, results))
    if not rows:
      raise InputError(f"no results.json of these settings under {args.workdir}")
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(format_table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
