"""Joint: the agent-free backbone trained on all tasks' data at once (upper bound).

The loss is SGD's; what differs is the stream: the benchmark merges every
task's training set into one shuffled task (``joint = True``) and the run is
evaluated once at the end, so the accuracy matrix has two rows (untrained,
trained) and forgetting and transfer are undefined.
"""

from dynamos_jax.methods.base import register
from dynamos_jax.methods.dynamos.sgd import SGD


@register
class Joint(SGD):
  name = "joint"
  joint = True
