"""MNIST-360 (general continual learning): rotating digit pairs, one pass.

The stream and the rotated test draws are generated from the seed by
``data/mnist360.py``; the run is planned as one task without boundaries and
evaluated once, at the end, by the accuracy over all rotated test draws
(docs/dynamos.md#the-mnist-360-stream).
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import accuracy as evaluation
from dynamos_jax.benchmarks.base import Benchmark, TaskData, register
from dynamos_jax.data import mnist360
from dynamos_jax.data.streams import EpochData
from dynamos_jax.errors import ConfigError

# fold_in constant of the test draws' key (the train stream uses 0, joint's shuffle 1).
_TEST_STREAM = 2**31 - 1


@register
class MNIST360(Benchmark):
  name = "mnist-360"
  dataset = "mnist"
  kind = "general"
  protocols = ("gcl",)
  single_pass = True
  no_validation = (
    "is a general-continual-learning stream, evaluated once at its end: it has no tasks "
    "to hold a validation share out of"
  )

  @classmethod
  def validate(cls, config):
    if config.epochs != 1:
      raise ConfigError("mnist-360 is a single pass over its stream: set --config.epochs=1")
    if config.mnist360.repeats < 1:
      raise ConfigError(
        f"mnist360.repeats must be >= 1 (got {config.mnist360.repeats}); 1 is "
        "the reference's stream"
      )

  def __init__(self, config, data, key, joint):
    super().__init__(config, data, key, joint)
    self.num_classes = mnist360.NUM_CLASSES
    host = data.host
    stream = mnist360.train_stream(
      jax.random.fold_in(key, 0),
      host.train_labels,
      config.batch_size,
      repeats=config.mnist360.repeats,
    )
    index, degrees, mask = stream.index, stream.degrees, stream.mask
    if joint:
      # The whole stream's items (rotations included), shuffled, in full batches.
      index, degrees = index[mask], degrees[mask]
      perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), len(index)))
      index, degrees, mask = mnist360.pad_batches(
        index[perm], degrees[perm], batch_size=config.batch_size
      )
    h, w = host.train_images.shape[1:3]
    self._stream = EpochData(
      data.train_images,
      data.train_labels,
      jnp.asarray(index),
      jnp.asarray(mask),
      jnp.int32(0),
      jnp.asarray(mnist360.rotation_params(degrees, h, w)),
    )
    test_index, test_degrees = mnist360.test_draws(
      jax.random.fold_in(key, _TEST_STREAM),
      host.test_labels,
      config.batch_size,
      shuffle=config.mnist360.shuffle_test,
    )
    rotate = jax.jit(mnist360.rotate_with_params)
    params = mnist360.rotation_params(test_degrees, h, w)
    # The rotated test draws on the device, uint8 [N, H, W, 3], and their labels [N].
    self._test = (
      jnp.concatenate(
        [
          rotate(data.test_images[test_index[i : i + 4096]], params[i : i + 4096])
          for i in range(0, len(test_index), 4096)
        ]
      ),
      host.test_labels[test_index],
    )
    self.batches = [int(index.shape[0])]
    self.epochs = 1
    self.seen_after = [1]

  def epoch_data(self, task, epoch):
    del task, epoch  # One pass over one stream.
    return self._stream

  def task_data(self, task):
    """The stream's items in stream order (rotated as trained), padding dropped."""
    stream = self._stream
    real = np.asarray(stream.mask).reshape(-1)
    items = np.flatnonzero(real)
    rotation = np.asarray(stream.rotation).reshape(-1, 6)

    def batches(batch_size):
      order, mask = self.fixed_order(np.asarray(stream.order).reshape(-1)[items], batch_size)
      rows, _ = self.fixed_order(np.arange(len(items)), batch_size)
      return EpochData(
        self.data.train_images,
        self.data.train_labels,
        order,
        mask,
        jnp.int32(0),
        jnp.asarray(rotation[items])[rows],
      )

    return TaskData(task, len(items), None, batches)

  def test_set(self):
    return self._test

  def evaluate(self, predict, batch_size, split="test"):
    del split  # No validation split (``no_validation``).
    images, labels = self._test
    logits = evaluation.predict_logits(lambda x: predict(x, None), images, batch_size)
    return {"gcl": mnist360.gcl_accuracy(np.argmax(logits, -1), labels)}
