"""How much of a run's final accuracy is its BatchNorm running statistics? A diagnostic.

  python reproduce/bn_from_buffer.py --workdir=RUN [--seed=N] [--forwards=100] [--batch=32]

For each seed of a run with a reservoir (dynamos, baseline, er, derpp, ...)
its final state is evaluated twice: as trained, and with BN's running
statistics re-estimated from its final buffer: ``--forwards`` train-mode
forwards, each over ``--batch`` filled slots drawn without replacement by
``np.random.default_rng(0)``, BN updating its running mean and variance with
its usual momentum (0.1 in PyTorch's terms) and the agents' gates
thresholded as at evaluation; the parameters are not touched. It uses only
what the method stores (the buffer's stream samples), but it is not the
method: the paper evaluates with the statistics training leaves. Prints, per
seed, both test accuracies over every test image, class-IL (MNIST-360: its
GCL accuracy, over the rotated draws), and both per-class accuracies.
Bad input: one line, exit 2.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reestimate(
  model, params, batch_stats, images: np.ndarray, mode: str, forwards: int, batch: int
):
  """BN running statistics after ``forwards`` train-mode forwards over draws of ``batch`` of
  ``images`` [n, H, W, C] (``np.random.default_rng(0)``, without replacement in a draw)."""

  @jax.jit
  def update(stats, x):
    _, new = model.apply(
      {"params": params, "batch_stats": stats}, x, mode, True, mutable=["batch_stats"]
    )
    return new["batch_stats"]

  rng = np.random.default_rng(0)
  for _ in range(forwards):
    batch_stats = update(
      batch_stats, jnp.asarray(images[rng.choice(len(images), batch, replace=False)])
    )
  return batch_stats


def per_class(
  model, params, batch_stats, images, labels, mode: str, num_classes: int, batch_size: int = 1000
) -> tuple[float, list[float]]:
  """Test accuracy (%) and each class's, eval-mode BN."""

  @jax.jit
  def logits_of(x):
    return model.apply({"params": params, "batch_stats": batch_stats}, x, mode, False)[0]

  pred = np.concatenate(
    [
      np.argmax(np.asarray(logits_of(jnp.asarray(images[i : i + batch_size]))), -1)
      for i in range(0, len(images), batch_size)
    ]
  )
  ok = pred == np.asarray(labels)
  return (
    float(100 * ok.mean()),
    [
      float(100 * ok[labels == c].mean()) if np.any(labels == c) else float("nan")
      for c in range(num_classes)
    ],
  )


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--seed", type=int, default=None)
  p.add_argument("--forwards", type=int, default=100)
  p.add_argument("--batch", type=int, default=32)
  args = p.parse_args(argv)
  from dynamos_jax import trainer
  from dynamos_jax.errors import InputError

  try:
    if args.forwards < 1 or args.batch < 1:
      raise InputError("--forwards and --batch must be >= 1")
    seeds = trainer.restore_seeds(args.workdir, args.seed)
    for exp, state, _ in seeds:
      learner, method = state.learner, exp.method
      buffer = getattr(learner, "buffer", None)
      if buffer is None or not hasattr(method, "model"):
        raise InputError(
          f"{exp.config.method} keeps no buffer of images: nothing to "
          "re-estimate BN from (use a run of dynamos, baseline, er, derpp)"
        )
      filled = int(min(int(buffer.num_seen), buffer.images.shape[0]))
      if filled < args.batch:
        raise InputError(
          f"seed {exp.seed}'s buffer holds {filled} samples, fewer than --batch={args.batch}"
        )
      model = method.model
      mode = "threshold" if method.gated else "off"
      images, labels = exp.benchmark.test_set()
      labels = np.asarray(labels)
      stats = reestimate(
        model,
        learner.params,
        learner.batch_stats,
        np.asarray(buffer.images[:filled]),
        mode,
        args.forwards,
        args.batch,
      )
      k = model.num_classes
      before = per_class(model, learner.params, learner.batch_stats, images, labels, mode, k)
      after = per_class(model, learner.params, stats, images, labels, mode, k)
      for name, (acc, classes) in (("as trained", before), ("BN from buffer", after)):
        print(
          f"seed {exp.seed}: {name:>14}: {acc:6.2f}  per class "
          + " / ".join(f"{c:.0f}" for c in classes),
          flush=True,
        )
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
