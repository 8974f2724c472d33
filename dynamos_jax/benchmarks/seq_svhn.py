"""Seq-SVHN: the SVHN digits (train / test splits) in five tasks of two classes."""

from dynamos_jax.benchmarks.base import register
from dynamos_jax.benchmarks.class_split import ClassSplit


@register
class SeqSVHN(ClassSplit):
  name = "seq-svhn"
  dataset = "svhn"
