"""Hooks around the authors' training loop for run_reference.py train: record, never change.

``Recorder`` wraps their ``utils.policy_training.evaluate`` and ``train`` and the
learner's ``observe`` (plus a forward hook on the network) to keep what a run
computes: each evaluation's per-task accuracies, the buffer after each task, the
per-step losses, keep ratios and accuracy of the current batch, and the training
seconds. ``GclRecorder`` does the same for MNIST-360 (their general-continual
loop: one final ``evaluate`` returning a float), adds per-class counts of that
evaluation and an optional step cap. ``capped_loader`` stands in for their
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
    self._capture = None

  def evaluate(self, original):
    def wrapped(model, dataset, last=False, threshold=0.5):
      start = time.perf_counter()
      accs = original(model, dataset, last=last, threshold=threshold)
      self.eval_seconds += time.perf_counter() - start
      # Copies: their CsvLogger pads the lists it is given in place.
      self.calls.append((bool(last), list(accs[0]), list(accs[1])))
      if len(self.calls) > 1 and not last:  # after a task: its size, the buffer's state
        self.buffers.append({**self.buffer_summary(model),
                             "task_train_samples": len(dataset.train_loader.dataset),
                             "task_test_samples": len(dataset.test_loaders[-1].dataset)})
      return accs
    return wrapped

  def train(self, original):
    def wrapped(model, dataset, args):
      self.args = args
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
          keep = output[1][:, bounds[l]:bounds[l + 1]].mean()
          self._capture[f"keep_ratio_{l + 1}"] = float(keep)

  def buffer_summary(self, model):
    """After a task: the buffer's labels over its sampled slots, and its never-written zero slots."""
    buf = model.buffer
    if not hasattr(buf, "examples"):
      return {"task": len(self.buffers) + 1, "seen": buf.num_seen_examples}
    n = min(buf.num_seen_examples, buf.buffer_size)
    zero = buf.examples[:n].flatten(1).abs().sum(1) == 0
    return {"task": len(self.buffers) + 1, "seen": buf.num_seen_examples, "slots": n,
            "label_counts": self.torch.bincount(buf.labels[:n], minlength=10).tolist(),
            "zero_slots": int(zero.sum())}


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

  def __init__(self, torch, log_every, num_classes):
    super().__init__(torch, log_every)
    self.accuracy, self.calls = None, []
    self.correct, self.total = [0] * num_classes, [0] * num_classes
    self._test_labels = None

  def evaluate(self, original):
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
