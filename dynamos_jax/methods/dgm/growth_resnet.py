"""The ImageNet generator's growth rule (docs/dgm.md#imagenet-growth): host arithmetic on sizes.

The ten masked weights, in the reference's mask order: fc1 (index ``FC``),
then conv1, conv2 and the 1x1 shortcut of each of the three blocks
(``conv1(b)``, ``conv2(b)``, ``short(b)``). ``grown_sizes`` turns one task's
newly reserved weights into the next allocation; generator_resnet.grow
moves the arrays to it.
"""

import numpy as np

from dynamos_jax.methods.dgm import generator_dcgan as gen

FC = 0
SHORTCUT_RULES = ("code", "kernel")
CREDIT_INPUTS = ("old", "new")


def conv1(b: int) -> int:
  return 1 + 3 * b


def conv2(b: int) -> int:
  return 2 + 3 * b


def short(b: int) -> int:
  return 3 + 3 * b


def _ceil_div(a: int, b: int) -> int:
  return -(-int(a) // int(b))


def grown_sizes(
  spec, sizes, delta, shortcut_rule: str = "code", credit_inputs: str = "old"
) -> tuple[np.ndarray, np.ndarray]:
  """The allocation after a task (docs/dgm.md#imagenet-growth; the reference's ``netG.extand``).

  Args:
    sizes: int [10, 2] the allocated (in, out) of each weight.
    delta: [10] weights newly reserved by the task in each weight.
    shortcut_rule: "code": the reference's shortcut arithmetic, whose input
      credit multiplies by the weight's (out, in) where the kernel's (1, 1)
      belongs, so the shortcut never grows by its own delta and only takes
      conv2's width; "kernel": the same rule with the 1x1 kernel.
    credit_inputs: the denominators' input channels: "old" (the ImageNet
      code: before this growth) or "new" (after it, as the MNIST code and
      ``hat.growth_w``).

  fc1: ceil(delta / nz) outputs, the total rounded up to a multiple of 16
  (whole 4x4 channels). Each block, given its new input width I': conv1
  gains a_1 = max(0, ceil((d_1 - (I' - I) H 9) / (n 9))) outputs (the free
  weights its input growth created credited first; n = I or I'), conv2
  a_2 = max(0, ceil((d_2 - a_1 O 9) / (n 9))) (n = H or H + a_1). If then
  I' != O + a_2 the shortcut conv grows to input I' and to the larger of its
  own and conv2's outputs, conv2 too (the residual sum needs equal widths);
  otherwise it stays as it is, idle. Returns (the new sizes [10, 2], the
  next task's counts [10]).
  """
  if shortcut_rule not in SHORTCUT_RULES or credit_inputs not in CREDIT_INPUTS:
    raise ValueError(f"unknown rule {shortcut_rule!r} / {credit_inputs!r}")
  sizes = np.array(sizes, np.int64)
  delta = [int(d) for d in delta]
  flat = 16 * int(sizes[FC, 1]) + _ceil_div(delta[FC], spec.nz)
  sizes[FC, 1] = gen.round_up(flat, 16) // 16
  width_in = int(sizes[FC, 1])
  counts = [width_in]
  for b in range(3):
    old_in, hidden = (int(x) for x in sizes[conv1(b)])
    width_out = int(sizes[conv2(b), 1])
    n = old_in if credit_inputs == "old" else width_in
    a1 = max(0, _ceil_div(delta[conv1(b)] - (width_in - old_in) * hidden * 9, n * 9))
    n = hidden if credit_inputs == "old" else hidden + a1
    a2 = max(0, _ceil_div(delta[conv2(b)] - a1 * width_out * 9, n * 9))
    hidden, width_out = hidden + a1, width_out + a2
    s_in, s_out = (int(x) for x in sizes[short(b)])
    # The reference tests the widths before equalising them (cap_shortcut).
    runs = width_in != width_out
    if runs:
      if shortcut_rule == "code":
        credit = width_in * s_out * s_out * s_in - s_out * s_in
      else:
        credit = (width_in - s_in) * s_out
      s_out += max(0, _ceil_div(delta[short(b)] - credit, s_in))
      s_in = width_in
      width_out = s_out = max(s_out, width_out)
    sizes[conv1(b)] = (width_in, hidden)
    sizes[conv2(b)] = (hidden, width_out)
    sizes[short(b)] = (s_in, s_out)
    counts += [hidden, width_out, width_out if runs else 0]
    width_in = width_out
  return sizes.astype(np.int32), np.asarray(counts, np.int32)
