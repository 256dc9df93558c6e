# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Run the Examples sections of every module of the installed package.

pytest's own ``--doctest-modules`` would collect the source tree; the suite
tests the installed package instead, so the docstrings are found through
the import system here. Examples marked ``+REMOTE_DATA`` need the network and
are left out; ``+FLOAT_CMP`` comparisons use pytest-doctestplus's checker.
"""

import doctest
import importlib
import pkgutil

import pytest
from pytest_doctestplus.output_checker import REMOTE_DATA, OutputChecker

import galmorphsearch

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(galmorphsearch.__path__, prefix="galmorphsearch.")
    if ".tests" not in info.name and info.name != "galmorphsearch._version"
)


@pytest.mark.parametrize("name", ["galmorphsearch", *MODULES])
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        checker=OutputChecker(),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    for test in finder.find(module, name, globs={}):
        test.examples = [ex for ex in test.examples if not ex.options.get(REMOTE_DATA)]
        runner.run(test, out=print)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {name}"

