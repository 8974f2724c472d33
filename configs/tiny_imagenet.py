"""Tiny ImageNet, 10 tasks x 20 classes, with SLNI on VGG11-slim (docs/slni.md#presets;
the network and the data: docs/slni.md#networks, docs/slni.md#tiny-imagenet).

  python -m dynamos_jax.run --config=configs/tiny_imagenet.py --workdir=runs/tiny_slnid \
      --config.data.path=/path/to/tiny-imagenet-200
  python -m dynamos_jax.run --config=configs/tiny_imagenet.py:no_reg --workdir=runs/tiny_noreg \
      --config.data.path=/path/to/tiny-imagenet-200

The argument is the representation regulariser (default slnid; no_reg is the
authors' "No-Reg": MAS still on, lambda_SSL unused). The authors' Tiny
ImageNet demo: VGG11-slim (N = 500 units in its two regularised Dense layers,
sigma = N / 6), a fresh head per task, MAS with lambda_Omega 4, lambda_SSL
1e-6, alpha averaged over tasks, SGD with momentum 0.9 at lr 0.01, batch 200,
the best epoch on the task's val accuracy kept, the learning rate x0.1 after
5 epochs without a val gain (and after every 5 more), the task stopped after
more than 10 (at most 60 epochs a task). Their val folder is the test set
they report, so this selects on the test set (slni.selection=best_test_epoch);
to select on held-out training images instead, and to run the plateaus on
them: --config.data.validation=0.1 --config.slni.selection=best_epoch
(docs/slni.md#model-selection). Data: the standard
tiny-imagenet-200 folder (``--config.data.path``), classes in sorted wnid
order in blocks of 20 (the authors' split is not reconstructible).

Not offered: the demo's retraining of a task with lambda_Omega halved while
the task's best val accuracy stays under 10 %. A stopped task's remaining
planned steps run but change nothing (the plan of steps is fixed).
The discount is the paper's product; the released code's is
``--config.slni.discount=min``.
"""

from dynamos_jax.config import base_config


def get_config(arg: str | None = None):
  c = base_config()
  c.method = "slni"
  c.dataset = "tiny-imagenet"
  c.lr = 0.01
  c.batch_size = 200
  c.epochs = 60
  c.buffer_size = 0  # No replay buffer.
  c.slni.update(
    model="vgg11_slim",
    width=500,
    channels=64,
    heads="per_task",
    regularizer=arg or "slnid",
    importance="mas",
    lambda_ssl=1e-6,
    lambda_omega=4.0,
    sigma_scale=6.0,
    alpha_mean=True,
    selection="best_test_epoch",
    lr_patience=5,
    lr_factor=0.1,
    stop_patience=10,
  )
  c.data.source = "files"
  c.train.eval_batch_size = 500
  c.checkpoint.every_steps = 2000
  return c
