"""The TensorFlow-1 summary API the authors' ``utils/logger.py`` calls, recording in memory.

Their ``Logger`` writes TensorBoard events through ``tf.summary.FileWriter``,
``tf.Summary`` and ``tf.HistogramProto`` (TF 1.x). No TensorFlow is installed
beside CPU torch, and their evaluations are only logged this way (per-class
"Accuracy_test" / "Accuracy_valid" on each task's writer, "Average_Acc. ..." and
"Best acc ..." on the main one), so this stand-in keeps every scalar summary
as ``SCALARS``: ``(log_dir, tag, step, value)`` in call order, which the driver
reads back. Histograms (their mask distributions) are accepted and dropped.
"""

SCALARS: list[tuple[str, str, int, float]] = []


class _Value:
  def __init__(self, tag, simple_value=None, histo=None, image=None, metadata=None, tensor=None):
    self.tag, self.simple_value, self.histo = tag, simple_value, histo


class Summary:
  Value = _Value

  class Image:
    def __init__(self, **kwargs):
      self.kwargs = kwargs

  def __init__(self, value):
    self.value = list(value)


class HistogramProto:
  def __init__(self):
    self.bucket_limit, self.bucket = [], []


class SummaryMetadata:
  class _Plugin:
    plugin_name = ""

  def __init__(self):
    self.plugin_data = SummaryMetadata._Plugin()


def make_tensor_proto(value, dtype=None):
  return value


string = "string"


class _FileWriter:
  def __init__(self, log_dir):
    self.log_dir = str(log_dir)

  def add_summary(self, summary, step=None):
    for v in summary.value:
      if v.simple_value is not None:
        value = v.simple_value
        value = float(value.item() if hasattr(value, "item") else value)
        SCALARS.append((self.log_dir, v.tag, None if step is None else int(step), value))

  def flush(self):
    pass


class summary:  # noqa: N801  (tf.summary)
  FileWriter = _FileWriter
