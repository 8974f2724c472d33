"""Split CIFAR-100, 10 tasks x 10 classes, with SLNI on VGG11-slim, a head per task.

  python -m dynamos_jax.run --config=configs/split_cifar100.py --workdir=runs/cifar100_slnid \
      --config.data.tfds_data_dir=/path/to/tensorflow_datasets
  python -m dynamos_jax.run --config=configs/split_cifar100.py:no_reg --workdir=... \
      --config.data.source=files --config.data.path=/path/to/cifar-100-python

The argument is the representation regulariser (default slnid; no_reg keeps
MAS, as the authors' "No-Reg"). The paper's CIFAR-100 network, class order,
preprocessing and schedule are not in the released code
(docs/slni.md#undetermined-choices), so this takes the authors' Tiny ImageNet
settings (docs/slni.md#presets) on VGG11-slim at 32x32 (three pools: 4x4x512
into the 500-unit Dense layers):
MAS with lambda_Omega 4, lambda_SSL 1e-6, sigma = N / 6, alpha averaged over
tasks, SGD with momentum 0.9 at lr 0.01, batch 200, 60 epochs per task, the
best epoch on the task's test accuracy kept (slni.selection=best_test_epoch;
on a validation split: --config.data.validation=0.1
--config.slni.selection=best_epoch); classes in natural order
(task t = classes 10 t .. 10 t + 9), pixels ImageNet-normalised, no
augmentation. Data: TFDS ``cifar100`` (prepared once, array_record) or the
python pickles of cifar-100-python.tar.gz.
The discount is the paper's product; the released code's is
``--config.slni.discount=min``.
"""

from dynamos_jax.config import sibling_config

tiny_imagenet = sibling_config(__file__, "tiny_imagenet.py")


def get_config(arg: str | None = None):
  c = tiny_imagenet.get_config(arg)  # the Tiny ImageNet demo's settings, on CIFAR-100
  c.dataset = "split-cifar100"
  c.data.source = "tfds"
  c.train.eval_batch_size = 1000
  return c
