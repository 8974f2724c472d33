"""The documentation's references resolve inside the repository, and its commands run.

Every file of the repository is read: none may point outside it (the team's notes live
there, not here), and every link between pages (markdown links in .md files, and
``docs/PAGE.md#anchor`` citations in code and docs) must name a file that exists and,
with an anchor, a heading of that file (GitHub's anchor of a heading: lowercased,
punctuation dropped, spaces as hyphens).

Every command shown in README.md, docs/*.md and the READMEs of reproduce/, speed/,
reference/ (and its folders) and examples/ is checked without doing its work: a
``python -m dynamos_jax.run|evaluate|analyze|compare`` command up to where it would train or
read its run (flags, configs), a ``python SCRIPT.py`` command for its script and flags
(its argparse parser, the script stopped there). Each test's docstring says what it leaves
out.
"""

import argparse
import contextlib
import glob
import io
import os
import re
import runpy
import shlex
import sys
from unittest import mock

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


# The pages that show commands: README.md, docs/*.md and the READMEs of the scripts' folders.
SCRIPT_DIRS = ("reproduce", "speed", "reference", "examples")
COMMAND_PAGES = (
  "README.md",
  "docs/*.md",
  *(f"{d}/README.md" for d in SCRIPT_DIRS),
  "reference/*/README.md",
)

# A command's arguments as the pages show them: to the end of its code span or line,
# continued over lines with a backslash or inside one span (a line that goes on with a flag).
TAIL = r"((?:[^`\n\\]|\\\n|\n(?=\s*--))*)"
RUN = re.compile(r"python3? -m dynamos_jax\.run\b" + TAIL)


def command_pages() -> list[str]:
  """The pages of COMMAND_PAGES."""
  return sorted({p for pattern in COMMAND_PAGES for p in glob.glob(os.path.join(ROOT, pattern))})


def documented_runs() -> list[tuple[str, list[str]]]:
  """(page, argv) of every run command shown in the pages of COMMAND_PAGES."""
  out = []
  for page in command_pages():
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

  monkeypatch.chdir(ROOT)  # the pages' config paths are the repository's
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


# The other commands: `python -m dynamos_jax.evaluate|analyze|compare ...`, and the scripts:
# `python SCRIPT.py ...` (any python: /tmp/torchenv/bin/python too), or a code span that starts
# with the script's path and names it with some of its arguments, to its closing backtick
# (over lines, not over a blank one). A path is the repository's (`../`: the page folder's).
MODULE = re.compile(r"python3? -m dynamos_jax\.(evaluate|analyze|compare)\b" + TAIL)
_PATH = rf"((?:\.\./)?(?:{'|'.join(SCRIPT_DIRS)})/[\w/]+\.py)(?=[\s`])"
SCRIPT = re.compile(r"python3? +" + _PATH + TAIL)
SCRIPT_SPAN = re.compile("`" + _PATH + r"((?:[^`\n]|\n(?!\s*\n))*)`")
# Where a shell command line ends (a redirection, a pipe, the next command).
SHELL_END = re.compile(r"&&|\|\|?|;|\d?>.*|&")
# A value the reader fills in: DIR, N, <tree>, $s, .../mnist.pkl.gz, /path/to/...
PLACEHOLDER = re.compile(r"\.\.\.|<[^>]*>|\$|/path/to/|\b[A-Z][A-Z0-9_]*\b")


def command_args(tail: str) -> list[str]:
  """A command's arguments: up to a shell operator, a template's [optional] brackets dropped."""
  out = []
  for arg in shlex.split(tail.replace("\\\n", " "), comments=True):
    if SHELL_END.fullmatch(arg):
      break
    if arg.strip("[]"):
      out.append(arg.strip("[]"))
  return out


def template(arg: str) -> bool:
  """Whether ``arg`` stands for arguments rather than being one (``...``,
  ``--config.KEY=VALUE``)."""
  return arg == "..." or bool(PLACEHOLDER.search(arg.partition("=")[0]))


def documented_commands(pattern: re.Pattern) -> list[tuple]:
  """(page, what the command runs: module or script path, its arguments) of each match."""
  return [
    (os.path.relpath(page, ROOT), *groups[:-1], command_args(groups[-1]))
    for page in command_pages()
    for groups in pattern.findall(_read(page))
  ]


def excused(error: str, args: list[str]) -> bool:
  """Whether ``error`` is about a value the page leaves to the reader (``--seed=N``)."""
  quoted = re.search(r"(?:value|choice): '([^']*)'", error)  # argparse's
  if quoted:
    return bool(PLACEHOLDER.search(quoted.group(1)))
  return any(PLACEHOLDER.search(a.partition("=")[2]) and a in error for a in args)  # absl's


def test_the_documented_other_commands_are_found():
  modules = documented_commands(MODULE)
  assert {name for _, name, _ in modules} == {"evaluate", "analyze", "compare"}
  assert len(modules) >= 15
  scripts = documented_commands(SCRIPT)
  assert len(scripts) >= 30
  assert ("docs/api.md", "examples/own_data.py", []) in scripts
  assert {path.split("/")[0] for _, path, _ in scripts} == set(SCRIPT_DIRS)
  spans = documented_commands(SCRIPT_SPAN)
  assert ("reference/README.md", "../speed/throughput.py") in [s[:2] for s in spans]
  train = "train --dataset=mnist-360 --buffer_size=B --seed=S --threads=1".split()
  assert ("docs/results.md", "reference/dynamos/run_reference.py", train) in spans


def _flag_owner(name: str) -> str | None:
  """The module that defines absl flag ``name`` (``--noNAME`` of a bool: NAME's)."""
  from absl import flags

  for module, defined in flags.FLAGS.flags_by_module_dict().items():
    for flag in defined:
      if name == flag.name or (flag.boolean and name == f"no{flag.name}"):
        return module
  return None


def test_every_documented_evaluate_analyze_compare_command_has_valid_flags(monkeypatch):
  """Each flag is one of the command's own or the shared ones of dynamos_jax/cli.py (absl
  holds every command's flags in one table: another command's is refused here), then the
  command's main runs with its work left out: flags parsed, compare's --config loaded and
  every (method, seed) config validated; evaluate and analyze check their flags and stop
  before reading the run. A command's name alone (a table of the commands) is not run, nor
  a value the reader fills in (``--seed=N``) held against it."""
  # run too: every command's flags are defined, so another command's is known as such.
  from dynamos_jax import analyze, compare, evaluate, parallel, run, workdir_lock  # noqa: F401

  from conftest import run_command

  monkeypatch.chdir(ROOT)  # the pages' config paths are the repository's
  monkeypatch.setattr(evaluate, "evaluate_workdir", lambda *a: None)
  monkeypatch.setattr(analyze, "analyze", lambda *a: None)
  monkeypatch.setattr(parallel, "start", lambda config: None)
  monkeypatch.setattr(workdir_lock, "hold", lambda workdir: contextlib.nullcontext())
  monkeypatch.setattr(compare, "_compare", lambda *a: None)  # after every config validates
  commands = {"evaluate": evaluate, "analyze": analyze, "compare": compare}
  bad, checked = [], 0
  for page, name, args in documented_commands(MODULE):
    if not args:
      continue  # the command's name in a table or prose
    allowed = {"dynamos_jax.cli", f"dynamos_jax.{name}"}
    for arg in [a for a in args if not template(a)]:
      owner = _flag_owner(arg.lstrip("-").split("=")[0].split(".")[0])
      if owner not in allowed:
        bad.append(f"{page}: {name} {arg}: not a flag of {name} (defined in {owner})")
    code, err = run_command(commands[name].main, [a for a in args if not template(a)])
    last = err.strip().splitlines()[-1] if err.strip() else ""
    if code not in (0, None) and not excused(last, args):
      bad.append(f"{page}: {name} {' '.join(args)}\n  {last or code}")
    checked += 1
  assert checked >= 10
  assert not bad, "documented commands with wrong flags:\n" + "\n".join(bad)


class _Parsed(Exception):
  """Ends a script where it calls parse_args."""


def _scripts_modules() -> dict:
  """The modules imported from the scripts' folders (three of them have a refdata)."""
  dirs = tuple(os.path.join(ROOT, d, "") for d in SCRIPT_DIRS)
  return {
    name: module
    for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(dirs)
  }


@contextlib.contextmanager
def _as_python_runs(path: str):
  """The process as ``python path`` gives it to the script (its folder first on sys.path,
  the repository as working directory, none of the other scripts' modules), and as it was
  again afterwards: sys.path, sys.argv, the environment, the modules of the scripts' folders."""
  saved = list(sys.path), list(sys.argv), dict(os.environ), os.getcwd(), _scripts_modules()
  for name in saved[4]:
    del sys.modules[name]
  sys.path.insert(0, os.path.dirname(path))
  sys.argv[:] = [path]
  os.chdir(ROOT)
  try:
    yield
  finally:
    sys.path[:], sys.argv[:] = saved[0], saved[1]
    for key in set(os.environ) - set(saved[2]):
      del os.environ[key]
    os.environ.update(saved[2])
    os.chdir(saved[3])
    for name in _scripts_modules():
      del sys.modules[name]
    sys.modules.update(saved[4])


def script_parser(path: str) -> argparse.ArgumentParser | None:
  """The parser the script at ``path`` reads its arguments with (None: it reads none). The
  script runs as ``__main__`` until it calls parse_args: its imports run, its work does not
  (every script parses first)."""
  if "parse_args(" not in _read(path):
    return None
  parsers = []

  def stop(parser, *args, **kwargs):
    parsers.append(parser)
    raise _Parsed

  with _as_python_runs(path), mock.patch.object(argparse.ArgumentParser, "parse_args", stop):
    with contextlib.suppress(_Parsed):
      runpy.run_path(path, run_name="__main__")
  assert parsers, f"{path} did not call parse_args"
  for each in _with_subcommands(parsers[0]):
    each.allow_abbrev = False  # a page shows the flag's name, not a prefix argparse takes
  return parsers[0]


def _with_subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
  """``parser`` and the parsers of its subcommands (``run_reference.py train``)."""
  subcommands = parser._subparsers._group_actions if parser._subparsers else []
  return [parser] + [
    p for a in subcommands for s in a.choices.values() for p in _with_subcommands(s)
  ]


def argparse_error(
  parser: argparse.ArgumentParser | None, args: list[str], whole: bool
) -> str | None:
  """argparse's error for ``args`` (its last line), or None when they parse. A command not
  shown ``whole`` is not held to the flags the script requires (argparse would report the
  missing flag, not a wrong one)."""
  if parser is None:
    return f"unrecognized arguments: {' '.join(args)}" if args else None
  actions = [a for p in _with_subcommands(parser) for a in p._actions if a.option_strings]
  relaxed = [a for a in actions if a.required and not whole]
  err = io.StringIO()
  try:
    for action in relaxed:
      action.required = False
    with contextlib.redirect_stderr(err):
      parser.parse_args(args)
  except SystemExit:
    return (err.getvalue().strip().splitlines() or ["exit"])[-1]
  finally:
    for action in relaxed:
      action.required = True
  return None


def script_path(page: str, path: str) -> str:
  """A documented script's path from the root (``../``: from the page's folder)."""
  base = os.path.dirname(page) if path.startswith("../") else ""
  return os.path.normpath(os.path.join(base, path))


def test_the_checks_refuse_a_wrong_flag():
  from dynamos_jax import compare  # noqa: F401  (defines --methods, --one_program)

  assert _flag_owner("methods") == _flag_owner("noone_program") == "dynamos_jax.compare"
  assert _flag_owner("workdir") == "dynamos_jax.cli" and _flag_owner("no_such_flag") is None
  parser = script_parser(os.path.join(ROOT, "reference", "dynamos", "run_reference.py"))
  assert argparse_error(parser, ["throughput", "--ref=R", "--steps=3"], whole=True) is None
  assert "required: --ref" in argparse_error(parser, ["throughput"], whole=True)
  assert argparse_error(parser, ["throughput"], whole=False) is None
  for wrong in (["throughput", "--step=3"], ["train", "--steps=3"]):
    assert "unrecognized arguments" in argparse_error(parser, wrong, whole=False)
  assert "invalid choice" in argparse_error(parser, ["thruput"], whole=False)
  assert excused("argument --seed: invalid int value: 'S'", [])
  assert not excused("argument --seed: invalid int value: 'x'", [])


def test_every_documented_script_exists_and_takes_its_flags():
  """Each script shown (``python SCRIPT.py ...``, or a code span that starts with its path)
  exists, and the script's own argparse parser takes the arguments shown: no unknown flag,
  subcommand or choice, and no flag it requires missing from a whole command line. The
  script runs only up to its parse_args call (most need data that is not offline, torch or
  minutes; one that imported torch before parsing would fail here, without torch).

  Not held against a command: a value the reader fills in (DIR, N, $s, .../mnist.pkl.gz), and
  the flags it requires where the page shows it in part (``...``, or a span that names the
  script with some of its arguments). Not checked: a script named without its folder
  (``run_reference.py throughput``), and flags mentioned on their own in prose (``--short``).
  """
  commands = [(c, True) for c in documented_commands(SCRIPT)]
  commands += [(c, False) for c in documented_commands(SCRIPT_SPAN)]
  parsers, bad = {}, []
  for (page, path, args), whole in commands:
    script = script_path(page, path)
    if not os.path.isfile(os.path.join(ROOT, script)):
      bad.append(f"{page}: {path}: no such script")
      continue
    if script not in parsers:
      parsers[script] = script_parser(os.path.join(ROOT, script))
    if not whole and not args:
      continue  # the script's name in prose
    whole = whole and "..." not in args
    error = argparse_error(parsers[script], [a for a in args if not template(a)], whole)
    if error and not excused(error, args):
      bad.append(f"{page}: {path} {' '.join(args)}\n  {error}")
  assert len(parsers) >= 15
  assert not bad, "documented scripts that refuse their arguments:\n" + "\n".join(bad)
