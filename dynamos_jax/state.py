"""The trainer's state: what changes during a run, as one pytree."""

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
  """step: int32 [] steps taken (all phases); key: the train stream's PRNG key
  (folded with ``step`` each step); learner: the method's state (any pytree,
  ``Method.init``)."""

  step: jax.Array
  key: jax.Array
  learner: Any
