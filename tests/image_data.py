"""Tiny generated CIFAR pickles and Tiny ImageNet folders for the tests."""

import os
import pickle

import numpy as np
from PIL import Image


def class_colour(c: int) -> tuple[int, int, int]:
  """A colour that tells class c (0..199) apart after JPEG compression."""
  return (c % 10 * 25 + 10, c // 10 % 10 * 25 + 10, c // 100 * 120 + 40)


def make_tiny_imagenet(
  root: str, classes: int, train: int, val: int, side: int = 64, grey_first: bool = False
) -> list[str]:
  """A Tiny ImageNet folder of ``classes`` classes, each image one flat colour
  (``class_colour``); wnids.txt deliberately unsorted. Returns the wnids in the
  order of wnids.txt."""
  wnids = [f"n{(c * 7919) % 100000:08d}" for c in range(classes)]
  listed = wnids[::-1]
  os.makedirs(os.path.join(root, "val", "images"), exist_ok=True)
  with open(os.path.join(root, "wnids.txt"), "w") as f:
    f.write("\n".join(listed) + "\n")
  lines = []
  for c, wnid in enumerate(sorted(wnids)):
    folder = os.path.join(root, "train", wnid, "images")
    os.makedirs(folder)
    for i in range(train):
      image = Image.new("RGB", (side, side), class_colour(c))
      if grey_first and c == 0 and i == 0:
        image = image.convert("L")
      image.save(os.path.join(folder, f"{wnid}_{i}.JPEG"), quality=95)
    for i in range(val):
      name = f"val_{c * val + i}.JPEG"
      Image.new("RGB", (side, side), class_colour(c)).save(
        os.path.join(root, "val", "images", name), quality=95
      )
      lines.append(f"{name}\t{wnid}\t0\t0\t{side - 1}\t{side - 1}")
  with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
    f.write("\n".join(lines[::-1]) + "\n")
  return listed


def write_cifar_pickle(path: str, images: np.ndarray, labels: np.ndarray, label_key: str):
  """A CIFAR python pickle as the archives hold it: bytes keys, data [N, 3072] of
  channel planes."""
  data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
  with open(path, "wb") as f:
    pickle.dump({b"data": data, label_key.encode(): list(map(int, labels))}, f, protocol=2)
