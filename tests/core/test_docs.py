"""The documentation's references resolve inside the repository.

Every file of the repository is read: none may point outside it (the team's notes live
there, not here), and every link between pages (markdown links in .md files, and
``docs/PAGE.md#anchor`` citations in code and docs) must name a file that exists and,
with an anchor, a heading of that file (GitHub's anchor of a heading: lowercased,
punctuation dropped, spaces as hyphens).
"""

import os
import re
import shlex

import pytest

from conftest import ROOT

SKIP_DIRS = {".git", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache", "runs"}
TEXT = (".py", ".md", ".toml", ".cfg", ".yml", ".yaml", ".sh", ".txt", ".json")
# A reference a reader of the repository cannot follow.
OUTSIDE = re.compile(r"\.\./shared|shared/reference|\b(?:dgm|slni|dynamos)-spec\b|\bspec \d")
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOCS_CITATION = re.compile(r"(?<![\w/.])(docs/[\w-]+\.md)(?:#([\w-]+))?")


def _files() -> list[str]:
  """Every text file of the repository but this one (which names what it looks for)."""
  this, out = os.path.abspath(__file__), []
  for directory, dirs, names in os.walk(ROOT):
    dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
    out += [os.path.join(directory, n) for n in names if n.endswith(TEXT) or n == "run"]
  return sorted(p for p in out if os.path.abspath(p) != this)


def _read(path: str) -> str:
  with open(path, encoding="utf-8", errors="replace") as f:
    return f.read()


def anchor(heading: str) -> str:
  """GitHub's anchor of a markdown heading's text."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
  """The anchors of a markdown file's headings (outside code blocks)."""
  out, fenced = set(), False
  for line in _read(path).splitlines():
    if line.startswith("```"):
      fenced = not fenced
    elif not fenced and re.match(r"#{1,6} ", line):
      out.add(anchor(line.lstrip("#")))
  return out


def test_the_anchor_of_a_heading_is_githubs():
  assert anchor(" Masks, and their scale (HAT) ") == "masks-and-their-scale-hat"
  assert anchor("Two forwards and BatchNorm statistics") == "two-forwards-and-batchnorm-statistics"


def test_no_file_points_outside_the_repository():
  found = [
    f"{os.path.relpath(p, ROOT)}:{n}: {line.strip()[:80]}"
    for p in _files()
    for n, line in enumerate(_read(p).splitlines(), 1)
    if OUTSIDE.search(line)
  ]
  assert not found, "references outside the repository:\n" + "\n".join(found)


def _broken(source: str, target: str, fragment: str | None) -> str | None:
  """Why ``target#fragment``, cited in ``source``, does not resolve (None: it does)."""
  if not os.path.exists(target):
    return "no such file"
  if fragment and target.endswith(".md") and fragment not in anchors(target):
    return f"no heading with anchor #{fragment}"
  return None


def _citations(path: str):
  """(target path, anchor or None) of each link or docs citation in ``path``."""
  text = _read(path)
  if path.endswith(".md"):
    for link in MARKDOWN_LINK.findall(text):
      if re.match(r"[a-z]+:", link) or link.startswith("#"):
        if link.startswith("#"):
          yield path, link[1:]
        continue
      target, _, fragment = link.partition("#")
      yield os.path.normpath(os.path.join(os.path.dirname(path), target)), fragment or None
  for page, fragment in DOCS_CITATION.findall(text):
    yield os.path.join(ROOT, page), fragment or None


def test_every_link_and_docs_citation_resolves():
  problems = []
  for path in _files():
    for target, fragment in _citations(path):
      why = _broken(path, target, fragment)
      if why:
        where = os.path.relpath(path, ROOT)
        problems.append(f"{where}: {os.path.relpath(target, ROOT)}#{fragment or ''}: {why}")
  assert not problems, "broken references:\n" + "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("page", ["docs/dynamos.md", "docs/slni.md", "docs/dgm.md"])
def test_each_system_has_its_page(page):
  assert os.path.exists(os.path.join(ROOT, page)), page


# `python -m dynamos_jax.run ...` as the README and docs show it (in code spans or blocks,
# continued over lines with a backslash or inside one span).
RUN = re.compile(r"python3? -m dynamos_jax\.run\b((?:[^`\n\\]|\\\n|\n(?=\s*--))*)")


def documented_runs() -> list[tuple[str, list[str]]]:
  """(page, argv) of every run command shown in README.md and docs/*.md."""
  pages = [os.path.join(ROOT, "README.md")] + sorted(
    os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs"))
  )
  out = []
  for page in pages:
    for tail in RUN.findall(_read(page)):
      argv = shlex.split(tail.replace("\\\n", " "), comments=True)
      out.append((os.path.relpath(page, ROOT), [a for a in argv if a.startswith("--")]))
  return out


def test_the_documented_run_commands_are_found():
  runs = documented_runs()
  assert len(runs) >= 10
  assert ("README.md", ["--config=configs/quickstart.py", "--workdir=runs/quickstart"]) in runs


def test_every_documented_run_command_has_valid_flags(monkeypatch):
  """Each command's flags parse and its config (and sweep) validates, as the command itself
  would before training; training is left out (most need data that is not offline, and
  the fast tier runs the quick start for real in test_cli)."""
  from dynamos_jax import parallel, run, trainer

  from conftest import run_command

  monkeypatch.setattr(parallel, "start", lambda config: None)
  monkeypatch.setattr(trainer, "train_and_evaluate", lambda config, workdir: None)
  bad, checked = [], 0
  for page, argv in documented_runs():
    if not argv or any("NAME" in a or "[" in a for a in argv):
      continue  # the command's name in a table, or its template
    code, err = run_command(run.main, argv)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    # A placeholder for data that is not here (the command is right; the data is missing).
    placeholder = any("/path/to/" in a or "..." in a for a in argv)
    if code not in (0, None) and not (placeholder and "data.path" in last):
      bad.append(f"{page}: {' '.join(argv)}\n  {last or code}")
    checked += 1
  assert checked >= 10
  assert not bad, "documented commands that fail before training:\n" + "\n".join(bad)
