"""Seq-MNIST: MNIST in five tasks of two classes, (0, 1) ... (8, 9)."""

from dynamos_jax.benchmarks.base import register
from dynamos_jax.benchmarks.class_split import ClassSplit


@register
class SeqMNIST(ClassSplit):
  name = "seq-mnist"
  dataset = "mnist"
