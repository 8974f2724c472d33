"""Hooks around the authors' training loop for run_reference.py train: record, never change.

``Recorder`` wraps their ``utils.policy_training.evaluate`` and ``train`` and the
learner's ``observe`` (plus a forward hook on the network) to keep what a run
computes: each evaluation's per-task accuracies, the buffer after each task, the
per-step losses, keep ratios and accuracy of the current batch, and the training
seconds. ``GclRecorder`` does the same for MNIST-360 (their general-continual
loop: one final ``evaluate`` returning a float), adds per-class counts of that
evaluation, an optional step cap and, after their run, the re-estimation of
BatchNorm statistics from their final buffer (``bn_from_buffer``) with an
evaluation over the same test batches. ``capped_loader`` stands in for their
DataLoader (worker count, a cap on training batches). torch is passed in, so
importing this module needs no torch.
"""

import itertools
import time

import refdata


class Recorder:
  """Wraps their evaluate / train / observe to record a run; computes nothing of its own."""

  def __init__(self, torch, log_every):
    self.torch = torch
    self.calls, self.buffers, self.log = [], [], refdata.StepLog(log_every)
    self.steps, self.train_seconds, self.eval_seconds, self.args = 0, 0.0, 0.0, None
    self.model = None
    self._capture = None

  def evaluate(self, original):
    def wrapped(model, dataset, last=False, threshold=0.5):
      start = time.perf_counter()
      accs = original(model, dataset, last=last, threshold=threshold)
      self.eval_seconds += time.perf_counter() - start
      # Copies: their CsvLogger pads the lists it is given in place.
      self.calls.append((bool(last), list(accs[0]), list(accs[1])))
      if len(self.calls) > 1 and not last:  # after a task: its size, the buffer's state
        self.buffers.append(
          {
            **self.buffer_summary(model),
            "task_train_samples": len(dataset.train_loader.dataset),
            "task_test_samples": len(dataset.test_loaders[-1].dataset),
          }
        )
      return accs

    return wrapped

  def train(self, original):
    def wrapped(model, dataset, args):
      self.args, self.model = args, model
      model.net.register_forward_hook(self.hook)
      model.observe = self.observe(model, model.observe)
      return original(model, dataset, args)

    return wrapped

  def task(self):
    return sum(1 for last, *_ in self.calls[1:] if not last) + 1  # 1-based, as our log

  def observe(self, model, original):
    def wrapped(inputs, labels, not_aug_inputs):
      phase = "warmup" if model.net.get_warmup() else "main"
      self._capture = {"labels": labels}
      start = time.perf_counter()
      losses = original(inputs, labels, not_aug_inputs)
      self.train_seconds += time.perf_counter() - start
      self.steps += 1
      extra, self._capture = self._capture, None
      extra.pop("labels")
      extra["buffer_seen"] = float(getattr(model.buffer, "num_seen_examples", 0))
      self.log.add(self.steps, self.task(), phase, {**losses, **extra})
      return losses

    return wrapped

  def hook(self, net, inputs, output):
    """The first training forward of a step (the current batch): accuracy, keep ratios."""
    if self._capture is None or "train_accuracy" in self._capture or not net.training:
      return
    torch = self.torch
    with torch.no_grad():
      logits = output[0] if isinstance(output, tuple) else output
      labels = self._capture["labels"]
      self._capture["train_accuracy"] = float((logits.argmax(1) == labels).float().mean())
      if isinstance(output, tuple):
        bounds = net.agent_boundaries
        for l in range(len(bounds) - 1):
          keep = output[1][:, bounds[l] : bounds[l + 1]].mean()
          self._capture[f"keep_ratio_{l + 1}"] = float(keep)

  def buffer_summary(self, model):
    """After a task: the buffer's labels over its sampled slots, and its never-written zero
    slots."""
    buf = model.buffer
    if not hasattr(buf, "examples"):
      return {"task": len(self.buffers) + 1, "seen": buf.num_seen_examples}
    n = min(buf.num_seen_examples, buf.buffer_size)
    zero = buf.examples[:n].flatten(1).abs().sum(1) == 0
    return {
      "task": len(self.buffers) + 1,
      "seen": buf.num_seen_examples,
      "slots": n,
      "label_counts": self.torch.bincount(buf.labels[:n], minlength=10).tolist(),
      "zero_slots": int(zero.sum()),
    }


class GclRecorder(Recorder):
  """MNIST-360: wraps their GCL evaluate / train, and their dataset's batch getters.

  Their ``utils.policy_continual_training.train`` pulls batches from
  ``MNIST360.get_train_data`` until ``train_over`` and then calls ``evaluate``
  once, which pulls ``get_test_data`` batches until ``test_over`` and returns the
  sample-weighted accuracy (percent). Per-class counts come from the test labels
  ``get_test_data`` returns and an eval-mode forward hook, with the same
  ``torch.max`` their evaluate takes (``refdata.gcl_record`` checks that their
  sum reproduces their accuracy).
  """

  def __init__(self, torch, log_every, num_classes, keep_test=False):
    """keep_test: keep their evaluation's test batches (for ``bn_from_buffer``; ~85 MB)."""
    super().__init__(torch, log_every)
    self.accuracy, self.calls = None, []
    self.num_classes = num_classes
    self.correct, self.total = [0] * num_classes, [0] * num_classes
    self._test_labels = None
    self.test_batches = [] if keep_test else None
    self._their_evaluate = None

  def evaluate(self, original):
    self._their_evaluate = original

    def wrapped(model, dataset, threshold=0.5):
      start = time.perf_counter()
      acc = original(model, dataset, threshold=threshold)
      self.eval_seconds += time.perf_counter() - start
      self.accuracy = float(acc)
      self.buffers.append({**self.buffer_summary(model), "train_steps": self.steps})
      return acc

    return wrapped

  def dataset(self, cls, max_steps):
    """Wraps ``cls``'s batch getters: test labels for the hook; ``train_over`` after max_steps."""
    get_train, get_test = cls.get_train_data, cls.get_test_data

    def get_train_data(ds):
      batch = get_train(ds)
      if max_steps and self.steps + 1 >= max_steps:  # this batch is the last observed
        ds.train_over = True
      return batch

    def get_test_data(ds):
      inputs, labels = get_test(ds)
      self._test_labels = labels
      if self.test_batches is not None:
        self.test_batches.append((inputs, labels))
      return inputs, labels

    cls.get_train_data, cls.get_test_data = get_train_data, get_test_data

  def hook(self, net, inputs, output):
    if net.training:
      return super().hook(net, inputs, output)
    labels, self._test_labels = self._test_labels, None
    if labels is None:
      return
    logits = output[0] if isinstance(output, tuple) else output
    _, predicted = self.torch.max(logits.data, 1)
    for label, right in zip(labels.tolist(), (predicted == labels).tolist()):
      self.total[label] += 1
      self.correct[label] += int(right)

  def replay_evaluate(self, threshold=0.5):
    """Their own evaluate over the recorded test batches: (accuracy, correct, total).

    The same images, rotations and batches as their evaluation (a second pass
    through their loaders would draw fresh shuffles and advance their rotation
    counters), so two evaluations differ only by the model.
    """
    recorder = self

    class Replay:  # the two members their evaluate reads from a GCL dataset
      def __init__(self):
        self.position = 0

      @property
      def test_over(self):
        return self.position == len(recorder.test_batches)

      def get_test_data(self):
        inputs, labels = recorder.test_batches[self.position]
        self.position += 1
        recorder._test_labels = labels  # for the per-class hook, as their getter's wrapper
        return inputs, labels

    saved = self.correct, self.total
    self.correct, self.total = [0] * self.num_classes, [0] * self.num_classes
    try:
      accuracy = float(self._their_evaluate(self.model, Replay(), threshold=threshold))
      return accuracy, self.correct, self.total
    finally:
      self.correct, self.total = saved

  def bn_from_buffer(self, batches, size, seed, threshold=0.5):
    """Re-estimates every BatchNorm's running statistics from their final buffer, in place.

    ``batches`` forwards of ``size`` buffer entries each (``refdata.bn_draws`` over
    the filled slots), under ``no_grad``, with the network in eval mode and only
    its BatchNorm modules in train mode: their ``Agent`` samples its gates
    whenever ``self.training``, so ``net.train()`` would sample them; in eval mode
    they are thresholded at ``threshold`` as in their evaluation. Each BN keeps its
    own momentum (PyTorch's update, unbiased batch variance into running_var) and
    starts from its end-of-stream statistics; no parameter changes. Call after
    their run (their saved model and result are then already written).

    Returns:
      what was done: filled slots, zero slots among them, the BN modules, their
      momenta, and per module the relative change of running mean / variance
      (||new - old|| / ||old||).
    """
    torch, model = self.torch, self.model
    net, buf = model.net, model.buffer
    if model.transform is not None:
      raise ValueError("their buffer draws apply a transform here; bn_from_buffer is for MNIST-360")
    filled = min(buf.num_seen_examples, buf.buffer_size)
    norms = [
      (name, m)
      for name, m in net.named_modules()
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    old = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in norms}
    net.eval()
    for _, m in norms:
      m.train()
    with torch.no_grad():
      for index in refdata.bn_draws(filled, batches, size, seed):
        model(buf.examples[torch.from_numpy(index)], threshold=threshold)
    net.eval()

    def change(new, previous):
      return float((new - previous).norm() / previous.norm().clamp_min(1e-12))

    zero = int((buf.examples[:filled].flatten(1).abs().sum(1) == 0).sum())
    return {
      "draws": {
        "batches": batches,
        "size": size,
        "seed": seed,
        "filled": filled,
        "zero_slots": zero,
        "threshold": threshold,
      },
      "bn_modules": len(norms),
      "momentum": sorted({m.momentum for _, m in norms}),
      "relative_change": {
        name: {
          "mean": change(m.running_mean, old[name][0]),
          "var": change(m.running_var, old[name][1]),
        }
        for name, m in norms
      },
    }


def capped_loader(torch, cap, workers):
  """Their DataLoader(...): num_workers -> `workers`; shuffled (training) loaders cut at `cap`."""
  original = torch.utils.data.DataLoader

  class Capped:
    def __init__(self, loader):
      self.loader, self.dataset = loader, loader.dataset

    def __len__(self):
      return min(len(self.loader), cap)

    def __iter__(self):
      return itertools.islice(iter(self.loader), cap)

  def make(dataset, *args, **kwargs):
    if workers is not None:
      kwargs["num_workers"] = workers
    loader = original(dataset, *args, **kwargs)
    return Capped(loader) if cap and kwargs.get("shuffle") else loader

  return make
