"""DGM's state pytree (``methods/dgm/dgm.py``): what a seed carries across steps and tasks.

G's params and BN statistics at the task's common shapes, D's variables,
two Adam states (re-created at every task start: a carried state would move
frozen weights, docs/dgm.md#adam-state-and-frozen-weights), the finished
tasks' embeddings (float: past tasks generate with the soft masks
sigmoid(S e), docs/dgm.md#soft-masks-for-past-tasks), the cumulative
binary masks, per-task active channel counts, the reserved counts of the
growth rule, a snapshot of G's weights at the task start (the replay's
generator), the task's sizes, the step counter, the method's own key,
``best_valid``'s records and, with ``dgm.d_statistics=replay``, D's
evaluation statistics. Its arrays change shapes between tasks (G grows,
``shapes``), never its tree structure; a checkpoint records the shapes
(``checkpoint.py``).
"""

import flax.struct
import jax


@flax.struct.dataclass
class DGMState:
  """The method's state (the module docstring). L = 3 masked layers; T tasks.

  g, g_stats: G's params and BN statistics (``methods/dgm/generator_dcgan.py``).
  d, d_stats: D's params and batch_stats.
  g_opt, d_opt: Adam states (fresh at each task start).
  past_emb: L x [T, *emb] the finished tasks' embeddings (row t after task t).
  cum: L x emb-shaped float 0/1, M^{<t} (DGMw: per weight, DGMa: per channel).
  counts: int32 [T + 1, L] active output channels of task t's sub-network (row T:
    after the growth that follows the last task).
  reserved: int32 [L] ones of M counted at the growths so far.
  snapshot: L x G's conv weights at the task start (the replay's generator).
  seen: int32 [t + 1] the classes seen (its length makes t static in the step).
  samples, batches, step_in_task: int32 [] N_t, batches per epoch, steps taken.
  key: uint32 raw key data of the method's named keys.
  selection: ``dgm.selection=best_valid``'s records per task (``selection``);
    {} (no leaves) for ``final``.
  eval_stats: with ``dgm.d_statistics=replay``, the BN statistics ``predict`` gives D
    (``statistics``); {} (no leaves) for ``running``, which evaluates with ``d_stats``.
  """

  g: dict
  g_stats: dict
  d: dict
  d_stats: dict
  g_opt: tuple
  d_opt: tuple
  past_emb: tuple
  cum: tuple
  counts: jax.Array
  reserved: jax.Array
  snapshot: tuple
  seen: jax.Array
  samples: jax.Array
  batches: jax.Array
  step_in_task: jax.Array
  key: jax.Array
  selection: dict
  eval_stats: dict

  @property
  def task(self) -> jax.Array:
    return self.seen[-1]
