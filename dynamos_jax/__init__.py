"""dynamos_jax: Dynamos (dynamically modular and sparse general continual learning) in JAX/Flax."""

__version__ = "0.1.0"
