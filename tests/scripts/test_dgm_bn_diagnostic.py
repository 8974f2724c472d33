"""reproduce/dgm_bn_diagnostic.py on the two-task DGM run: each task's end restored, D's
running-statistics accuracy the run's own (its "replayed" way is a replay run's row:
tests/dgm/test_dgm_statistics.py)."""

import numpy as np
import pytest

from dynamos_jax import trainer

from conftest import load_script

diagnostic = load_script("dgm_bn_diagnostic", "reproduce", "dgm_bn_diagnostic.py")

# conftest's dgm_two_task_run is trained once on the "dgm" worker.
pytestmark = pytest.mark.xdist_group("dgm")


def test_each_task_end_is_evaluated_three_ways(dgm_two_task_run):
  results, _, workdir = dgm_two_task_run
  records = diagnostic.diagnose(workdir, per_class=6)
  assert [r["task"] for r in records] == [1, 2]
  exp, _, _ = trainer.restore_run(workdir)
  labels = np.asarray(exp.benchmark.test_set()[1])
  for t, record in enumerate(records):
    # The restored D with its own statistics is the run's evaluation after that task.
    logged = results["class_il"]["matrix"][t + 1][: t + 1]
    np.testing.assert_allclose(record["running"]["per_class"], logged, atol=1e-3)
    for way in diagnostic.WAYS:
      assert record[way]["A"] == pytest.approx(np.mean(record[way]["per_class"]))
      assert sum(record[way]["predicted_counts"]) == np.sum(labels <= t)


def test_a_run_of_another_method_is_refused(tmp_path, tiny_data, tiny_config, capsys):
  tiny_config.method, tiny_config.epochs = "sgd", 1
  tiny_config.train.max_steps_per_task = 1
  trainer.train_and_evaluate(tiny_config, str(tmp_path))
  assert diagnostic.main([f"--workdir={tmp_path}"]) == 2
  assert "give a DGM run" in capsys.readouterr().err
