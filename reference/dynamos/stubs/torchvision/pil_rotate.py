"""torchvision 0.9.1's ``transforms.functional.rotate`` on a PIL image, defaults only (no torch).

Their MNIST-360 (``datasets/transforms/rotation.py``, ``IncrementalRotation``)
calls ``F.rotate(img, degs)`` on the RGB PIL image their ``MyMNIST`` builds,
with every other argument left at its default. In torchvision 0.9.1 that path
is ``functional_pil.rotate(img, angle, interpolation=NEAREST, expand=False,
center=None, fill=None)``, which turns ``fill=None`` into 0 per band and calls
``img.rotate(angle, NEAREST, False, None, fillcolor=(0,) * bands)``: a
counter-clockwise rotation about the image centre, nearest neighbour, same size,
black outside. Anything else (a tensor input, another interpolation, expand, a
centre, a fill) is not on their path and raises instead of being approximated.

Kept apart from the stub's ``__init__`` (which imports torch) so that
tests/scripts/test_reference_dynamos.py can check it with PIL and numpy alone.
"""

from PIL import Image

NEAREST = "nearest"  # torchvision's InterpolationMode.NEAREST, by value


def rotate(img, angle, interpolation=NEAREST, expand=False, center=None, fill=None, resample=None):
  """Rotates a PIL image by ``angle`` degrees counter-clockwise, as torchvision 0.9.1 does.

  Args:
    img: a PIL image (their call passes RGB, 28 x 28).
    angle: int or float degrees, counter-clockwise.
    interpolation, expand, center, fill, resample: torchvision's arguments; only
      their defaults are implemented.

  Returns:
    A PIL image of the same size and mode.
  """
  if not isinstance(img, Image.Image):
    raise RuntimeError(
      "torchvision stub: rotate is implemented for PIL images only "
      f"(got {type(img).__name__}); tensors are not on the authors' path"
    )
  if (
    interpolation not in (NEAREST, Image.NEAREST)
    or expand
    or center is not None
    or fill is not None
    or resample is not None
  ):
    raise RuntimeError(
      "torchvision stub: rotate implements only the defaults the authors' "
      "IncrementalRotation uses (nearest, no expand, centre, fill or resample)"
    )
  # torchvision 0.9.1 checks the angle's type before anything else.
  if not isinstance(angle, (int, float)):
    raise TypeError("Argument angle should be int or float")
  # _parse_fill(None, img): fill 0, one value per band for multi-band images.
  bands = len(img.getbands())
  fillcolor = (0,) * bands if bands > 1 else 0
  return img.rotate(angle, Image.NEAREST, False, None, fillcolor=fillcolor)
