"""slni.init_weights (docs/slni.md#initialisation): the MLP's hidden layers from an npz of the
authors' initial model in PyTorch's layout, the same for every seed; the head from the seed."""

import jax
import numpy as np
import pytest

from dynamos_jax import config as config_lib
from dynamos_jax import run, trainer
from dynamos_jax.errors import ConfigError

from conftest import run_command

INPUTS = 8 * 8  # the tiny dataset's images: permuted MNIST keeps one channel


@pytest.fixture
def slni(tiny_data, tiny_config):
  c = tiny_config
  c.method, c.dataset = "slni", "permuted-mnist"
  c.lr, c.epochs, c.batch_size = 0.05, 1, 8
  c.slni.width = 16
  c.train.max_steps_per_task = 4
  return c


def _write(path, width=16, inputs=INPUTS, drop=None) -> dict[str, np.ndarray]:
  """A synthetic file of export_initial.py's layout (weight [out, in]); returns its arrays."""
  rng = np.random.default_rng(7)
  arrays = {
    "classifier.0.weight": rng.normal(size=(width, inputs)).astype(np.float32),
    "classifier.0.bias": rng.normal(size=(width,)).astype(np.float32),
    "classifier.2.weight": rng.normal(size=(width, width)).astype(np.float32),
    "classifier.2.bias": rng.normal(size=(width,)).astype(np.float32),
  }
  arrays.pop(drop, None)
  np.savez(path, **arrays, width=np.int64(width), note=np.str_("synthetic"))
  return arrays


def _params(config, seed):
  return trainer.Experiment(config, seed=seed).initial_state().learner.params


def test_hidden_layers_are_the_files_and_the_head_the_seeds(slni, tmp_path):
  drawn = _params(slni, 0)
  arrays = _write(tmp_path / "init.npz")
  slni.slni.init_weights = str(tmp_path / "init.npz")
  config_lib.validate(slni)
  seeds = [_params(slni, seed) for seed in (0, 1)]
  for params in seeds:
    for ours, theirs in (("fc1", "classifier.0"), ("fc2", "classifier.2")):
      np.testing.assert_array_equal(params[ours]["kernel"], arrays[f"{theirs}.weight"].T)
      np.testing.assert_array_equal(params[ours]["bias"], arrays[f"{theirs}.bias"])
  # The head keeps seed 0's draw without the file, and seed 1 draws another.
  jax.tree.map(np.testing.assert_array_equal, seeds[0]["head"], drawn["head"])
  assert not np.array_equal(seeds[0]["head"]["kernel"], seeds[1]["head"]["kernel"])


@pytest.mark.parametrize(
  "change, write, message",
  [
    ({"model": "vgg11_slim"}, {}, "not vgg11_slim: use it with slni.model=mlp"),
    ({"init_weights": "/no/such/file.npz"}, None, "no such file"),
  ],
)
def test_bad_settings_are_refused_by_validate(slni, tmp_path, change, write, message):
  path = tmp_path / "init.npz"
  if write is not None:
    _write(path, **write)
  slni.slni.update({"init_weights": str(path), **change})
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(slni)


@pytest.mark.parametrize(
  "change, write, message",
  [
    (
      {},
      {"width": 8},
      r"classifier.0.weight is float32 \[8, 64\], but fc1 .* needs float \[16, 64\]",
    ),
    ({}, {"inputs": 784}, r"\[16, 784\], but fc1 of this MLP \(64 inputs, slni.width=16\)"),
    ({}, {"drop": "classifier.2.bias"}, "no array 'classifier.2.bias' "),
    # Maxout's second layer is N/2 wide: the ReLU net's file does not fit it.
    ({"activation": "maxout"}, {}, r"classifier.2.weight is float32 \[16, 16\], .* \[8, 8\]"),
    ({}, "garbage", "cannot read it as an .npz"),
    ({}, "npy", "a single array, not an .npz archive"),
  ],
)
def test_files_that_do_not_fit_are_one_line(slni, tmp_path, change, write, message):
  path = tmp_path / "init.npz"
  if write == "garbage":
    path.write_bytes(b"not a zip")
  elif write == "npy":
    with open(path, "wb") as f:
      np.save(f, np.zeros(3))
  else:
    _write(path, **write)
  slni.slni.update({"init_weights": str(path), **change})
  config_lib.validate(slni)  # The file exists; its contents are checked with the benchmark.
  with pytest.raises(ConfigError, match=message) as error:
    trainer.Experiment(slni)
  assert "\n" not in str(error.value)


def test_the_command_line_exits_2_with_one_line(tiny_data, tmp_path):
  _write(tmp_path / "init.npz", width=8)
  code, stderr = run_command(
    run.main,
    [
      "--config=configs/permuted_mnist.py:mas128",
      f"--workdir={tmp_path / 'run'}",
      "--config.data.source=bundled",
      "--config.train.progress=False",
      f"--config.slni.init_weights={tmp_path / 'init.npz'}",
    ],
  )
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert code == 2 and len(errors) == 1, stderr
  assert "classifier.0.weight is float32 [8, 64], but fc1" in errors[0]
  assert "Traceback" not in stderr and not (tmp_path / "run" / "results.json").exists()
