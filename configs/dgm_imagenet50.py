"""DGM on ImageNet-50 (cfg_imnet_dgmw.yml): DGMw, five tasks of ten classes.

See docs/dgm.md#imagenet-networks and docs/dgm.md#imagenet-code-options.

  python -m dynamos_jax.run --config=configs/dgm_imagenet50.py --workdir=runs/dgm_imnet50 \
      --config.data.path=/path/to/ILSVRC2012

The data: the ILSVRC-2012 root with train/<wnid>/ (all 1,000 class folders)
and val/ (data/imagenet.py: Resize(32) of the shorter side + CenterCrop(32);
test = the official validation images, 50 a class; decoded once and cached);
``--config.data.source=tfds`` reads TFDS ``imagenet2012`` instead. Without a
usable source, ``validate`` stops the run at once in one line (exit 2).
Task t holds the sorted-synset folders {1, 15, 29, 45, 59, 65, 81, 89, 90,
99} + 100 t as labels 10 t .. 10 t + 9 (the paper's five tasks; the code loops
ten, docs/dgm.md#paper-and-code-differences). Nothing is held out of train/
(the code evaluates on the validation images only), the real images are
reshuffled every epoch.

The nets (docs/dgm.md#imagenet-networks): the masked ResNet generator (fc1 +
three residual up-blocks, per-class heads, its growth rule;
methods/dgm/generator_resnet.py) and the ResNet-18 discriminator with its
2048-unit neck (``ResNetDiscriminator``; ``dgm.ndf`` is its stem width, 64),
picked by the benchmark (``dgm.generator=auto``).

The reference's settings (docs/dgm.md#hyperparameters): DGMw, batch 70, 101
epochs per task, Adam lr 2e-4 for D and G with betas (0.5, 0.999), ngf 64,
n_z 128, s_max 1e4, lambda_RU 0.001, lambda_GP 0.6, lambda_adv 1, the class term
CE in G's loss (aux_g), D not re-initialised (critic head reset, aux head
grown: the seen classes' columns kept), seed 100. Read from the ImageNet code
(approaches/DGMw_imnet.py; methods/dgm/imagenet.py says how each is done): its
schedule (s^e with (e + 1) / I, the ramp over floor(N / B) + 1 batches;
docs/dgm.md#scale-schedule), binary past masks
(docs/dgm.md#soft-masks-for-past-tasks), the G step reusing the D step's
noise, the one-hot prefix over 100 of the 128 noise dims, the replay of
floor(N_t / 10) images a past class re-permuted every epoch
(docs/dgm.md#replay), the fakes labelled as the real batch. Accuracy: the
final model's after each task (the code's "valid" figures are on the test
images, so there is no ``best_valid`` here); top-5 is not computed.

Not measured here: no ImageNet offline, so nothing of this config has run
on the real data (its step and an end-to-end run are tested at tiny sizes on
synthetic images and a fake ILSVRC folder, tests/dgm/test_dgm_imagenet.py). At
full size a task has about 13,000 images, ~186 batches of 70 x 101 epochs,
each batch t + 3 D steps through ResNet-18: a GPU job (one full-size task-0 step took
about 300 s on the shared 2-core AMD EPYC, load ~4.6, 2026-12-01, after a 6-minute compile;
D 12,328,001 parameters with its 50 aux outputs, G 364,544 masked weights).
Not followed (methods/dgm/imagenet.py): the code's aux head bias from task 1
on, its skipping of one-image batches, its no-op L1 term.
"""

from dynamos_jax.config import sibling_config

dgm_mnist = sibling_config(__file__, "dgm_mnist.py")

VARIANTS = {"dgmw": dict(variant="w", ngf=64, smax=1e4, lambda_ru=0.001, eval_every=2)}
SHARED = {
  **dgm_mnist.SHARED,
  "lr_d": 2e-4,
  "lr_g": 2e-4,
  "lambda_gp": 0.6,
  "aux_g": True,
  "reinit_d": False,
  "ndf": 64,
  "schedule": "imagenet",
  "past_masks": "binary",
  "aux_head": "grow",
  "g_noise": "shared",
  "onehot_dims": 100,
}


def get_config(arg: str | None = None):
  c = dgm_mnist.dgm_config(
    "dgm-imagenet50",
    arg,
    VARIANTS,
    SHARED,
    batch_size=70,
    epochs=101,
    seed=100,
    name="configs/dgm_imagenet50.py",
  )
  c.data.source = "files"
  c.train.eval_batch_size = 250
  return c
