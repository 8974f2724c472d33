"""SLNI (selfless sequential learning) and its family: the representation
regularisers, MAS/EWC importance, the permuted-MNIST MLP and VGG11-slim, and
what a user looks at in their hidden layers.
"""

# Imported for its @register: makes the family available by config name.
from dynamos_jax.methods.slni import slni  # noqa: F401
