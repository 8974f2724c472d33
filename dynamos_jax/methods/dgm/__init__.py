"""DGM (dynamic generative memory): DGMw and DGMa with HAT masks on a growing
generator, the AC-GAN discriminator that is also the classifier, replay,
"best validation" selection, summaries and plots; and JT, its upper bound.
"""

# Imported for their @register: each makes its methods available by config name.
from dynamos_jax.methods.dgm import dgm, joint  # noqa: F401
