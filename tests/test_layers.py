# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The floors of the package: a subpackage imports only subpackages on lower
floors (see ``docs/layers.rst``).

Every module of the source tree is parsed (not imported), and every import
of ``galmorphsearch.X...`` or relative import that reaches another
subpackage counts, including the imports inside functions, which run
later but tie the subpackages as firmly.
"""

import ast
from pathlib import Path

import pytest

import galmorphsearch

PACKAGE = Path(galmorphsearch.__file__).parent

#: The floors, lowest first. A subpackage may import the subpackages of
#: lower floors only; subpackages on one floor (peers) do not import each
#: other at all. A new subpackage must be placed here.
FLOORS = (
    ("utils",),
    ("catalogs", "latents", "preprocessing"),
    ("datasets", "model"),
    ("database",),
    ("search",),
    ("evaluation",),
    ("visualization",),
    ("pipeline",),
    ("scripts",),
)

#: The only imports allowed against the floors:
#: (importing module, function the import is in, imported subpackage): reason.
EXCEPTIONS = {
    ("galmorphsearch.database", "__getattr__", "pipeline"):
        "deprecated aliases galmorphsearch.database.build_database and .local_cluster, "
        "imported lazily (with an AstropyDeprecationWarning) from their new home",
}

#: Imports of private names (``_name``, or any name of a ``_module``) across
#: subpackages still to be replaced by public ones (issue 14), as
#: (importing module, imported ``module.name``): reason. Remove an entry when
#: its import is gone (test_private_allowlist_is_still_needed says so); add
#: none: give the lower floor a public, documented name instead.
PRIVATE_ALLOWED = {
    # The build pipeline assembles a database from the same pieces as
    # LatentDatabase.build; they need a public home in database (e.g. a
    # database/building.py for the pipeline) once database.py is settled.
    **{("galmorphsearch.pipeline.build", f"galmorphsearch.database.database.{name}"):
       "pieces of LatentDatabase.build shared with the build pipeline"
       for name in ("_cutout_keywords", "_checked_encoder_output", "_build_meta",
                    "_catalog_table", "_check_catalog", "_check_unique_objids", "_few",
                    "_file_format", "_merge_keyword_summaries", "_resolve_scheme",
                    "_set_h_similarity")},
    ("galmorphsearch.pipeline.build", "galmorphsearch.database._hdf5.write_hdf5"):
        "the pipeline writes HDF5 partitions itself",
    # plot_reconstructions prepares images the way the trainers do.
    ("galmorphsearch.visualization.plots", "galmorphsearch.model._inputs.to_float"):
        "model's image preparation is private",
    ("galmorphsearch.visualization.plots", "galmorphsearch.model.training._image_tensor"):
        "model's image preparation is private",
}

#: Names of the top-level package that are no subpackage's (anyone may import them).
ROOT_NAMES = {"__version__", "_version"}

FLOOR_OF = {name: i for i, floor in enumerate(FLOORS) for name in floor}


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _root_exports():
    """Names the top-level package re-exports, and the subpackage each comes from."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    exports = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                exports[alias.asname or alias.name] = node.module.split(".")[0]
    return exports


class _Imports(ast.NodeVisitor):
    """
    What a module imports: ``(line, function, dotted module, name)``, ``name``
    the attribute imported from the module (None for a module imported whole).
    """

    def __init__(self, module, is_package):
        self.package = module.split(".") if is_package else module.split(".")[:-1]
        self.functions = []
        self.found = []

    def _function(self):
        return self.functions[-1] if self.functions else None

    def visit_FunctionDef(self, node):
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            self.found.append((node.lineno, self._function(), alias.name, None))

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.package[:len(self.package) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module
        for alias in node.names:
            # ``from package import submodule`` imports the submodule.
            candidate = f"{module}.{alias.name}"
            if _is_module(candidate):
                target, name = candidate, None
            elif module == "galmorphsearch" and alias.name not in ROOT_NAMES:
                target, name = candidate, None  # a re-export of the root (see _subpackage)
            else:
                target, name = module, alias.name
            self.found.append((node.lineno, self._function(), target, name))


def _is_module(dotted):
    parts = dotted.split(".")
    if parts[0] != "galmorphsearch":
        return False
    path = PACKAGE.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _subpackage(dotted, root_exports):
    """The subpackage a dotted galmorphsearch name belongs to (None: the package root)."""
    parts = dotted.split(".")
    if parts[0] != "galmorphsearch" or len(parts) == 1:
        return None
    if parts[1] in ROOT_NAMES:
        return None
    if parts[1] in root_exports and not _is_module(f"galmorphsearch.{parts[1]}"):
        return root_exports[parts[1]]
    return parts[1]


def _all_imports():
    """
    ``(module, line, function, own subpackage, imported subpackage, target, name)``
    of the imports across subpackages.
    """
    root_exports = _root_exports()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        own = _subpackage(module, {})
        if own is None:  # the package root: its facade re-exports public names
            continue
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for line, function, target, name in visitor.found:
            other = _subpackage(target, root_exports)
            if other is not None and other != own:
                found.append((module, line, function, own, other, target, name))
    return found


IMPORTS = _all_imports()


def test_every_subpackage_has_a_floor():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(FLOOR_OF), (
        "Place every subpackage on a floor in FLOORS (and in docs/layers.rst): "
        f"missing {sorted(subpackages - set(FLOOR_OF))}, "
        f"gone {sorted(set(FLOOR_OF) - subpackages)}")


def test_the_parser_sees_imports():
    # A sanity check of the test itself: known imports are found, those in
    # functions included.
    pairs = {(own, other) for _, _, _, own, other, _, _ in IMPORTS}
    assert ("search", "latents") in pairs
    assert ("database", "latents") in pairs
    assert ("pipeline", "model") in pairs  # inside EncoderPlugin.setup
    assert ("database", "pipeline") in pairs  # the one exception
    assert ("scripts", "preprocessing") in pairs  # through ``from galmorphsearch import``


def test_no_import_from_a_lower_floor_to_a_higher_one_or_between_peers():
    wrong = set()
    for module, line, function, own, other, target, _ in IMPORTS:
        if FLOOR_OF[other] < FLOOR_OF[own]:
            continue
        if (module, function, other) in EXCEPTIONS:
            continue
        kind = "a peer" if FLOOR_OF[other] == FLOOR_OF[own] else "a higher floor"
        where = f" (in {function})" if function else ""
        wrong.add(f"{module}:{line}{where} imports {target}, {kind} ({own} -> {other})")
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("exception", sorted(EXCEPTIONS))
def test_exceptions_are_still_needed(exception):
    module, function, other = exception
    assert any((m, f, o) == exception for m, _, f, _, o, _, _ in IMPORTS), (
        f"{module}.{function} no longer imports {other}: remove it from EXCEPTIONS")


def test_search_uses_the_public_names_of_database():
    private = [f"{module}:{line} imports {target}{'.' + name if name else ''}"
               for module, line, _, own, other, target, name in IMPORTS
               if own == "search" and other == "database"
               and any(part.startswith("_") for part in [*target.split(".")[2:], name or ""])]
    assert not private, "\n".join(private)


def _private(part):
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _private_imports():
    """``{(module, imported module.name): line}`` of the private names imported across
    subpackages: a ``_name`` or a name of a ``_module`` (dunder names are public)."""
    found = {}
    for module, line, _, _, _, target, name in IMPORTS:
        if any(_private(part) for part in [*target.split(".")[2:], name or ""]):
            found.setdefault((module, f"{target}.{name}" if name else target), line)
    return found


PRIVATE_IMPORTS = _private_imports()


def test_no_private_name_is_imported_from_another_subpackage():
    # A subpackage uses the public, documented names of the floors below
    # (those in a module's __all__); the top-level package's __version__ and
    # dunder names are public.
    wrong = [f"{module}:{line} imports {name}"
             for (module, name), line in sorted(PRIVATE_IMPORTS.items())
             if (module, name) not in PRIVATE_ALLOWED]
    assert not wrong, "\n".join(wrong)


def test_the_private_check_sees_private_imports():
    # A sanity check of the test itself, on an import the allowlist keeps.
    assert ("galmorphsearch.pipeline.build", "galmorphsearch.database._hdf5.write_hdf5") \
        in PRIVATE_IMPORTS


@pytest.mark.parametrize("allowed", sorted(PRIVATE_ALLOWED))
def test_private_allowlist_is_still_needed(allowed):
    assert allowed in PRIVATE_IMPORTS, (
        f"{allowed[0]} no longer imports {allowed[1]}: remove it from PRIVATE_ALLOWED")
