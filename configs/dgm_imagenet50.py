"""DGM on ImageNet-50 (dgm-spec 1, 2.5, 9: cfg_imnet_dgmw.yml): recorded, NOT runnable here.

  python -m dynamos_jax.run --config=configs/dgm_imagenet50.py --workdir=runs/dgm_imnet50
  # -> stops at once with a one-line error (exit 2): see below

What is missing in this project: an ILSVRC-2012 loader (Resize(32) of the
shorter side + CenterCrop(32) of the train folders; test = the official
validation images, 50 per class), and ten-class tasks in the dgm method (it
trains one generator head per class) running spec 2.5's nets. Those nets
exist as models that nothing runs yet: the ResNet generator (masked linear
projection + three residual up-blocks, per-class conv heads, its growth rule)
in ``models/dgm_generator_resnet.py``, the CIFAR-style ResNet-18
discriminator with its 2048-unit neck as ``ResNetDiscriminator`` in
``models/dgm_discriminator.py``.
The benchmark ``dgm-imagenet50`` exists to refuse the run in one line, and
``benchmarks.one_class.imagenet_class_indices`` gives the class selection.

The reference's settings (spec 9), kept here as the config so that a later
port starts from them:
- 5 tasks of 10 classes (the paper's ImageNet-50; the code loops 10 tasks,
  100 classes, spec 11.5); task t uses the sorted-synset folder indices
  {1, 15, 29, 45, 59, 65, 81, 89, 90, 99} + 100 t, labels 10 t .. 10 t + 9;
- DGMw only: batch 70, 101 epochs per task, Adam lr 2e-4 for D and G with
  betas (0.5, 0.999), ngf 64, n_z 128, s_max 1e4, lambda_RU 0.001,
  lambda_GP 0.6, lambda_adv 1, the class term CE in G's loss (aux_g),
  D not re-initialised (critic head reset, aux head grown), seed 100,
  validation every 2 epochs.
*Inferred* (not in the config file): the ImageNet code's schedule variant
(s^e with (e + 1) / I, the batch ramp over floor(N / B) + 1 batches; spec
3.1) and its binary past masks (spec 12.5) would need options dgm.py does not
have; the replay re-permuted every epoch with len(task) / 10 samples per
class (spec 5) likewise.
"""

from dynamos_jax.config import sibling_config

dgm_mnist = sibling_config(__file__, "dgm_mnist.py")

VARIANTS = {"dgmw": dict(variant="w", ngf=64, smax=1e4, lambda_ru=0.001, eval_every=2)}
SHARED = {**dgm_mnist.SHARED, "lr_d": 2e-4, "lr_g": 2e-4, "lambda_gp": 0.6, "aux_g": True,
          "reinit_d": False}


def get_config(arg: str | None = None):
  return dgm_mnist.dgm_config("dgm-imagenet50", arg, VARIANTS, SHARED, batch_size=70,
                              epochs=101, seed=100, name="configs/dgm_imagenet50.py")
