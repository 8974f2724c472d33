"""What the authors' DGM run reads from us and what we read back from it, without torch.

- ``task_arrays``: one seed's ten one-class tasks exactly as our ``dgm`` method
  sees them (``experiment.Experiment``'s benchmark): per task the training images
  in the order our fixed-order epochs batch them, the held-out validation images
  and the class's test images, as float32 in [-1, 1] (``to_unit`` of the 32x32
  uint8 bytes) with int64 labels; images NCHW [N, 1, 32, 32], the layout their
  tensors have.
- ``their_batches``: the (start, stop) slices their training loop cuts from a
  task's N images at batch B (``approaches/DGMw.py``: ``r[i:i + B]``, the last
  one short), so a test can hold our batch order against theirs.
- ``task_record``: one task's evaluation (their logged per-class figures, our
  exact per-class accuracies and prediction counts) as a result.json entry.

numpy, jax and dynamos_jax only (tests/scripts/test_reference_dgm.py runs without torch).
"""

import numpy as np

SPLITS = ("train", "valid", "test")


def task_arrays(benchmark, to_unit) -> list[dict[str, np.ndarray]]:
  """Each task's ``{split}_x`` float32 [N, 1, 32, 32] and ``{split}_y`` int64 [N].

  Args:
    benchmark: a built ``benchmarks.one_class.OneClassMNIST`` (one class a task).
    to_unit: ``models.dgm_discriminator.to_unit`` (uint8 -> [-1, 1]), passed in so
      that the very function our step applies makes the floats.

  The train split keeps ``benchmark.task_indices[t]``'s order: batch i of every
  epoch of ours is rows i B .. i B + B - 1 of it (``fixed_order``), and their loop
  slices ``data[t]['train']['x']`` in row order, so the two batch the same images.
  """
  host = benchmark.data.host
  train_images = np.asarray(host.train_images)
  train_labels = np.asarray(host.train_labels).astype(np.int64)
  test_images, test_labels = benchmark.test_set()
  test_images = np.asarray(test_images)
  test_labels = np.asarray(test_labels).astype(np.int64)
  if benchmark.classes_per_task != 1 or train_images.shape[1:] != (32, 32, 1):
    raise ValueError(
      "task_arrays: a one-class grey 32x32 benchmark (dgm-mnist) is expected, "
      f"got {benchmark.classes_per_task} classes a task, images "
      f"{train_images.shape[1:]}"
    )

  # uint8 NHWC -> float32 NCHW through our own to_unit, jitted on a device array as in
  # our step: on a numpy array its x / 255 runs in numpy and can differ from XLA's in
  # the last bit.
  import jax
  import jax.numpy as jnp

  unit = jax.jit(to_unit)

  def floats(images):
    return np.ascontiguousarray(np.asarray(unit(jnp.asarray(images))).transpose(0, 3, 1, 2))

  tasks = []
  for t in range(benchmark.num_tasks):
    rows = {"train": benchmark.task_indices[t], "valid": benchmark.valid_parts[t]}
    entry = {}
    for split, idx in rows.items():
      entry[f"{split}_x"] = floats(train_images[idx])
      entry[f"{split}_y"] = train_labels[idx]
    test = np.flatnonzero(test_labels == t)
    entry["test_x"], entry["test_y"] = floats(test_images[test]), test_labels[test]
    for split in SPLITS:
      if not np.all(entry[f"{split}_y"] == t):
        raise ValueError(
          f"task {t}: {split} labels are not all {t} (one class a task, class = task)"
        )
    tasks.append(entry)
  return tasks


def save(path: str, tasks: list[dict[str, np.ndarray]], meta: dict) -> None:
  """``tasks`` as one npz (keys ``t{T}_{split}_{x|y}``) plus ``meta`` (JSON in key ``meta``)."""
  import json

  arrays = {f"t{t}_{k}": v for t, entry in enumerate(tasks) for k, v in entry.items()}
  np.savez(path, meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)


def load(path: str) -> tuple[list[dict[str, np.ndarray]], dict]:
  """What ``save`` wrote: (tasks, meta)."""
  import json

  with np.load(path) as z:
    meta = json.loads(str(z["meta"]))
    tasks = [
      {k: z[f"t{t}_{k}"] for s in SPLITS for k in (f"{s}_x", f"{s}_y")}
      for t in range(meta["num_tasks"])
    ]
  return tasks, meta


def their_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
  """The [start, stop) rows of each batch their loop takes from n images (last one short)."""
  return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def batch_mean_accuracy(correct: np.ndarray, batch_size: int) -> float:
  """Their per-class figure (%): the mean over batches of B of each batch's accuracy.

  ``utils`` of theirs (``App.valid``) averages batch accuracies, so a short last
  batch weighs as much as a full one; e.g. 33 images at B = 32, the last wrong:
  (32 / 32 + 0 / 1) / 2 = 50 %, against 97 % exact.
  """
  correct = np.asarray(correct, bool)
  accs = [correct[a:b].mean() for a, b in their_batches(len(correct), batch_size)]
  return 100.0 * float(np.mean(accs))


def task_record(
  task: int,
  logged: list[float],
  predictions: list[np.ndarray],
  best_selected: float,
  seconds: float,
) -> dict:
  """One task's result.json entry.

  Args:
    task: t (classes 0..t seen).
    logged: their final evaluation's per-class test accuracy (%) as they log it
      (batch means, ``batch_mean_accuracy``), classes 0..t.
    predictions: per class c <= t, int [N_c] D's argmax (eval mode) on class c's
      test images, computed by the driver after their ``train`` returned.
    best_selected: what their ``train`` returns (the test average at the
      evaluation of best validation average within the task).
    seconds: wall time of their ``train(data, t)``.
  """
  if len(logged) != task + 1 or len(predictions) != task + 1:
    raise ValueError(
      f"task {task}: expected {task + 1} classes, got {len(logged)} logged, "
      f"{len(predictions)} predicted"
    )
  exact = [100.0 * float(np.mean(np.asarray(p) == c)) for c, p in enumerate(predictions)]
  counts = [np.bincount(np.asarray(p), minlength=task + 1).tolist() for p in predictions]
  return {
    "task": task,
    "class_il_logged": [float(a) for a in logged],
    "A_logged": float(np.mean(logged)),
    "class_il": exact,
    "A": float(np.mean(exact)),
    "predicted_counts": counts,  # [true class][predicted class]
    "best_selected_A": float(best_selected),
    "seconds": float(seconds),
  }
