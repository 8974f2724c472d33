"""dynamos_jax: continual learning in JAX/Flax on one trainer.

Three systems and their baselines: Dynamos (dynamically modular and sparse
general continual learning) with ER, DER++ and the rehearsal baseline; SLNI
(selfless sequential learning) with MAS and EWC; DGM (dynamic generative
memory, DGMw and DGMa). Each learner family lives in ``methods/<family>/``;
the trainer, data, benchmarks, checkpoints and commands are shared.
"""

from dynamos_jax import cpu_kernels

__version__ = "0.1.0"

cpu_kernels.configure()
