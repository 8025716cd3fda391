"""Name -> Upsampler class, and where each came from.

Every operator, built-in or not, arrives by one path: a *plugin source* is imported (or called) and
the classes it registers are recorded under that source's label. Sources are

* the entry points of the group ``upbench.operators`` of every installed distribution (upbench's own
  built-ins are the entry point ``builtin = "operators"`` of its pyproject.toml), loaded on first use;
* ``load_plugin("path/to/file.py")`` or ``load_plugin("package.module")`` (``bench.py --plugin``).

An entry point may name a module (importing it registers its operators), an Upsampler subclass (it is
registered) or a callable taking no arguments (called; it registers what it makes, e.g. with
:func:`upbench.wrap`). A source that fails to load is reported with a warning and skipped, except the
built-ins, which fail loudly. The built-ins load even where the installed metadata predates their
entry point (a source checkout run from an older install): :data:`BUILTIN_SOURCE` is loaded first
whether or not an entry point declares it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import site
import sys
import sysconfig
import warnings
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator, TypeVar

from .base import Upsampler
from .files import digest_files
from .rules import forget_rules, rules

ENTRY_POINT_GROUP = "upbench.operators"
BUILTIN_SOURCE = "operators"

_REGISTRY: dict[str, type[Upsampler]] = {}
_ORIGINS: dict[str, str] = {}  # operator name -> label of the source that registered it
_loaded_sources: dict[str, str] = {}  # resolved plugin target -> its label
_loading: list[str] = []  # labels of the sources being loaded (innermost last)
_REPLAY: dict[str, str] = {}  # operator name -> the load_plugin target that brings it into a fresh process
_SOURCE_DIGESTS: dict[str, str] = {}  # operator name -> source_digest of what was registered
# the plugins being loaded, innermost last: the file (None: none) and the name of the module
_loading_plugins: list[tuple[Path | None, str]] = []
_entry_points_loaded = False
U = TypeVar("U", bound=type[Upsampler])


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an operator's name, or None: ``--ops`` splits its list at commas and strips each
    item, and a row's key joins its fields with '|', so such a name registered but could never be selected."""
    if "," in name or "|" in name:
        return f"contains {',' if ',' in name else '|'!r}"
    if name != name.strip() or not name.isprintable():
        return "has spaces at an end or a control character"
    return None


def register(cls: U) -> U:
    """Add an Upsampler class under its ``name``; the same class twice is a no-op, another class under a
    taken name is a ValueError naming both sources."""
    if not (isinstance(cls, type) and issubclass(cls, Upsampler)):
        raise ValueError(f"register: expected an Upsampler subclass, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"{cls.__qualname__}: an Upsampler needs a name to be registered")
    if (problem := name_problem(cls.name)) is not None:
        raise ValueError(f"{cls.__qualname__}: operator name {cls.name!r} {problem}; expected a name without ',' or "
                         f"'|', spaces at its ends or control characters (--ops splits at commas, row keys join "
                         f"fields with '|')")
    cls.check_declaration()
    # the built-ins first: a script's own 'nearest' registered before them took their place, and their loading
    # then stopped at the clash, leaving every other built-in unknown for the rest of the process
    _load_entry_points()
    cls.formulas = cls.formulas.named(cls.name)  # also where name or formulas were set after the class body
    origin = _loading[-1] if _loading else f"module {cls.__module__}"
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        taken = _REGISTRY[cls.name]
        file = _defining_file(cls)
        if cls.__module__ == taken.__module__:  # a notebook cell or a script part run twice, or two classes
            raise ValueError(f"operator {cls.name!r} is registered twice in {cls.__module__}: by "
                             f"{taken.__qualname__} and by {cls.__qualname__} (a cell run again?); register it once, "
                             f"or rename one of them")
        if file is not None and file == _defining_file(taken):  # one plugin imported as a file and as a module
            raise ValueError(
                f"operator {cls.name!r} is registered twice from one file, {file}: by {_ORIGINS[cls.name]} and by "
                f"{origin}, two imports of the same code under two module names; load it once, one way"
            )
        raise ValueError(
            f"operator {cls.name!r} is claimed twice: by {_ORIGINS[cls.name]} ({taken.__module__}.{taken.__qualname__}) "
            f"and by {origin} ({cls.__module__}.{cls.__qualname__}); rename one of them"
        )
    _REGISTRY[cls.name] = cls
    _ORIGINS.setdefault(cls.name, origin)
    _SOURCE_DIGESTS.setdefault(cls.name, _digest(tuple(_file_states(_source_files(cls)))))
    if not _loading and cls.__module__ != "__main__":  # registered by importing a module: importing it again replays it
        _REPLAY.setdefault(cls.name, cls.__module__)
    return cls


def _defining_file(cls: type) -> Path | None:
    """The resolved file of the module that defines ``cls`` (None for one without a file)."""
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return Path(file).resolve() if isinstance(file, str) else None


def origin(name: str) -> str:
    """Which plugin source registered operator ``name``."""
    get(name)
    return _ORIGINS[name]


# -- what was registered, as a hash of its source ---------------------------------------------------
# Folders where pip, a distribution or a cluster's module system puts installed packages, wherever they lie.
SITE_FOLDER_NAMES = ("site-packages", "dist-packages")


@lru_cache(maxsize=None)
def _libraries() -> frozenset[Path]:
    """The interpreter's library and its installed packages: site-packages, the user's site (pip install
    --user)."""
    paths = [p for name, p in sysconfig.get_paths().items() if name in ("stdlib", "purelib", "platlib")]
    paths += [*site.getsitepackages(), site.getusersitepackages()]
    return frozenset(Path(p).resolve() for p in paths)


def _installed(path: Path) -> bool:
    """Whether ``path`` lies in :func:`_libraries` or in any site-packages / dist-packages folder (a library on
    PYTHONPATH from a cluster's module system)."""
    return (any(library == path or library in path.parents for library in _libraries())
            or any(part in SITE_FOLDER_NAMES for part in path.parts))


def _package_files(module_name: str) -> list[Path]:
    """Every .py file of the package ``module_name`` belongs to, where that package is the user's own code (not
    installed): an operator's helpers, wherever in its package they live."""
    package = sys.modules.get(module_name.partition(".")[0])
    roots = [Path(p).resolve() for p in getattr(package, "__path__", ())]
    return [file for root in roots if not _installed(root) for file in root.rglob("*.py")]


def _own_module(name: str) -> tuple[bool, Path | None]:
    """Whether module ``name`` is the user's own code, and its file: loaded, not upbench's (whose edits the git
    commit of the rows names) and not installed. A namespace package (no file) is the user's where all its
    folders are. An editable install of a library is not told apart from the user's own code: its edits
    change what the operator computes as much."""
    module = sys.modules.get(name)
    if module is None or name.partition(".")[0] == "upbench":
        return False, None
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        path = _not_installed(file)
        return path is not None, path
    folders = [str(p) for p in getattr(module, "__path__", ())]
    return bool(folders) and all(_not_installed(folder) for folder in folders), None


@lru_cache(maxsize=None)
def _not_installed(file: str) -> Path | None:
    """``file`` resolved, unless it is installed (:func:`_installed`; asked once per file: registering the
    built-ins meets torch's modules once per operator)."""
    path = Path(file).resolve()
    return None if _installed(path) else path


def _module_used(value: Any) -> str | None:
    """The module a module-level name refers to: the module itself, or the module that defines it (for an
    object that raises on being looked at, a lazy settings proxy, the module of its class)."""
    if issubclass(type(value), ModuleType):
        return value.__name__
    try:
        name = getattr(value, "__module__", None)
    except Exception:
        name = type(value).__module__
    return name if isinstance(name, str) else None


def _imported_own_files(module_names: Iterable[str]) -> list[Path]:
    """The files of the user's own modules that ``module_names`` use at module level (``import helper``,
    ``from helper import Block``, ``import namespace_package.helper``), and those they use in turn: an operator
    built from a helper file beside its plugin computes what the helper says."""
    seen, todo, files = set(module_names), list(module_names), []
    with warnings.catch_warnings():  # looking at a library's deprecated names must not warn the user
        warnings.simplefilter("ignore")
        while todo:
            module = sys.modules.get(todo.pop())
            for value in list(vars(module).values()) if module is not None else ():
                used = _module_used(value)
                if used is None or used in seen:
                    continue
                seen.add(used)
                own, file = _own_module(used)
                if file is not None:
                    files.append(file)
                if own:
                    todo.append(used)
    return files


def _source_files(cls: type[Upsampler]) -> list[Path]:
    """The files that define ``cls``: the modules of it and its bases up to :class:`Upsampler` (for a
    wrapped module, the factory's module), all files of their packages where these are the user's own code
    (the built-in operators share ``operators/assembly.py``, a plugin package its helpers), the plugin
    file or module that registered it (a wrapped factory may live elsewhere, its knobs and formulas in the
    plugin), and the user's own modules any of those use at module level (:func:`_imported_own_files`).
    Not followed: an import inside a function, which runs after registering."""
    plugin_file, plugin_module = _loading_plugins[-1] if _loading_plugins else (None, None)
    files = [plugin_file] if plugin_file is not None else []
    modules = [plugin_module] if plugin_module else []
    for klass in cls.__mro__:
        if klass is Upsampler:
            break
        modules.append(klass.__module__)
        files.extend(filter(None, [_defining_file(klass)]))
        files.extend(_package_files(klass.__module__))
    files.extend(_imported_own_files(modules))
    return sorted(set(files))


def _file_states(files: Iterable[Path]) -> Iterator[tuple[Path, int, int]]:
    """Each file with its modification time and size: a key that changes when the file does."""
    for path in files:
        try:
            state = path.stat()
        except OSError:
            state = None
        yield path, state.st_mtime_ns if state else -1, state.st_size if state else -1


@lru_cache(maxsize=None)
def _digest(states: tuple[tuple[Path, int, int], ...]) -> str:
    """:func:`digest_files` of the files, read once per process while they stay as they were: the built-ins
    all hash the same package."""
    return digest_files(path for path, _, _ in states)


def source_digest(name: str) -> str:
    """A short hash of the source files of operator ``name`` as registered (:func:`_source_files`): rows
    measured before and after its file was edited differ in it, which the upbench commit cannot tell for
    a researcher's plugin, nor for a built-in edited and not committed."""
    get(name)
    return _SOURCE_DIGESTS[name]


# -- loading sources ----------------------------------------------------------------------------
@contextmanager
def _source(label: str) -> Iterator[None]:
    _loading.append(label)
    try:
        yield
    finally:
        _loading.pop()


def _adopt(obj: Any, label: str) -> None:
    """What an entry point or plugin resolved to: a module registered while importing, a class, or a callable."""
    if inspect.ismodule(obj):
        return
    if isinstance(obj, type) and issubclass(obj, Upsampler):
        register(obj)
    elif callable(obj):
        obj()
    else:
        raise ValueError(f"{label}: expected a module, an Upsampler subclass or a callable, got {type(obj).__name__}")


def _file_module_name(path: Path) -> str:
    # a name unique per file, so two plugin files both called plugin.py do not shadow each other
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"upbench_plugin_{path.stem}_{digest}"


def _import_file(path: Path) -> Any:
    """The plugin file ``path`` imported, its folder put on the import path beforehand, as ``python path/to/file.py``
    puts it (but at the path's end, so that a helper file named like an installed module does not hide it): a
    helper file beside it imports, here and in an isolated worker, which loads the plugin the same way."""
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    module_name = _file_module_name(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"plugin file {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _load_failure(error: BaseException) -> str:
    """What a plugin's import raised, for a one-line message. A sys.exit() call is said as one: its SystemExit
    would otherwise end the process, silently and with the plugin's exit code (0 for a bare sys.exit())."""
    if isinstance(error, SystemExit):
        return f"it called sys.exit({'' if error.code is None else repr(error.code)}) while being imported"
    return f"{type(error).__name__}: {error}"


def load_plugin(target: str | Path) -> list[str]:
    """Register the operators of a plugin: a Python file (``path/to/file.py``) or an importable module
    (``package.module``), optionally ``module:attribute`` naming a class or callable in it.

    Returns the names it registered (none when it was loaded before). Raises ValueError when the target
    cannot be found or imported (whatever its import raised but KeyboardInterrupt, a sys.exit() call too), or
    claims a name another source registered.
    """
    _load_entry_points()
    text = str(target)
    is_file = text.endswith(".py") or Path(text).is_file()
    key = str(Path(text).resolve()) if is_file else text
    if key in _loaded_sources:
        return []
    label = f"plugin file {text}" if is_file else f"plugin module {text}"
    module_name, _, attribute = text.partition(":")  # what a module target imports, and what it then looks up
    if not is_file and Path(text).is_dir() and not _importable(module_name):
        # 'No module named /path' said nothing of what was wrong; a package folder in the working directory imports
        raise ValueError(f"{label}: a folder; expected a Python file (path/to/file.py) or an importable module "
                         "(package.module)")
    imported_before = not is_file and module_name in sys.modules  # its registrations ran then
    before, rules_seen = set(_REGISTRY), set(rules())
    with _source(label):
        try:
            if is_file:
                if not Path(text).is_file():
                    raise ValueError(f"{label}: no such file")
                path = Path(text).resolve()
                _loading_plugins.append((path, _file_module_name(path)))
                try:
                    obj = _import_file(path)
                finally:
                    _loading_plugins.pop()
                _adopt(obj, label)
            else:
                spec = importlib.util.find_spec(module_name)
                if spec is None and Path(f"{module_name}.py").is_file():  # a file named as a module
                    raise ValueError(f"{label}: no module of that name; did you mean the file {module_name}.py? "
                                     "(a plugin file is given with its .py)")
                origin = Path(spec.origin).resolve() if spec and spec.has_location else None
                _loading_plugins.append((origin, module_name))
                try:
                    obj = importlib.import_module(module_name)
                    for part in filter(None, attribute.split(".")):
                        obj = getattr(obj, part)
                    _adopt(obj, label)
                finally:
                    _loading_plugins.pop()
        except BaseException as error:
            _forget(set(_REGISTRY) - before)  # a plugin that failed half-way registers nothing: fixed, it loads
            forget_rules(set(rules()) - rules_seen)
            if isinstance(error, (ValueError, KeyboardInterrupt)):  # KeyboardInterrupt: the user's Ctrl-C
                raise
            # whatever the user's code raised, sys.exit() too: name the plugin and the cause
            raise ValueError(f"{label}: failed to load: {_load_failure(error)}") from error
    _loaded_sources[key] = label
    added = [name for name in _REGISTRY if name not in before]
    if not added and set(rules()) == rules_seen and not imported_before:  # most likely the wrong file: say so
        warnings.warn(f"{label} registered no operator and no counting rule", PluginWarning, stacklevel=2)
    for name in added:
        _REPLAY[name] = key
    return added


def _forget(names: Iterable[str]) -> None:
    """Unregister ``names`` (what a plugin registered before it failed)."""
    for name in names:
        for table in (_REGISTRY, _ORIGINS, _SOURCE_DIGESTS, _REPLAY):
            table.pop(name, None)


class PluginWarning(UserWarning):
    """Something about a plugin its user should hear of, though it loaded."""


def _importable(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):  # a path is no module name
        return False


def _entry_point_label(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    owner = f" of {dist.name}" if dist is not None else ""
    return f"entry point {entry_point.name} = {entry_point.value}{owner}"


def _declared_entry_points() -> list[EntryPoint]:
    """The group's entry points, one per value (an editable and a regular install may both declare one)."""
    unique: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        unique.setdefault(entry_point.value, entry_point)
    return sorted(unique.values(), key=lambda ep: (ep.value != BUILTIN_SOURCE, ep.name))


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True  # set first: a plugin that asks the registry while loading must not recurse
    declared = _declared_entry_points()
    if not any(ep.value == BUILTIN_SOURCE for ep in declared):  # stale metadata: the built-ins load regardless
        with _source(f"built-in module {BUILTIN_SOURCE}"):
            importlib.import_module(BUILTIN_SOURCE)
    for entry_point in declared:
        label = _entry_point_label(entry_point)
        with _source(label):
            if entry_point.value == BUILTIN_SOURCE:
                _adopt(entry_point.load(), label)
                continue
            try:
                _adopt(entry_point.load(), label)
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # one broken third-party plugin must not take the built-ins down
                warnings.warn(f"upbench: skipped {label}: {_load_failure(error)}", stacklevel=2)
        _loaded_sources[entry_point.value] = label


# -- lookup -------------------------------------------------------------------------------------
def available() -> list[str]:
    """Registered operator names: the built-ins, then entry-point plugins, then loaded plugins."""
    _load_entry_points()
    return list(_REGISTRY)


def get(name: str) -> type[Upsampler]:
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown operator {name!r}; known operators: {', '.join(_REGISTRY)}") from None


def make(name: str, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int) -> Upsampler:
    """Build operator ``name`` for ``channels`` decoder channels."""
    return get(name)(channels, guide_channels=guide_channels, impl=impl, **hparams)


def replay_sources(names: Iterable[str]) -> list[str]:
    """What a fresh process (an isolated worker, a shard's job) must load to know operators ``names``, as
    :func:`load_plugins` takes it: the plugin files and modules they came from, and the modules that
    registered them on import. Entry points load by themselves there; ``__main__`` cannot be imported by name."""
    _load_entry_points()
    return sorted({_REPLAY[name] for name in names if name in _REPLAY})


def load_plugins(sources: Iterable[str]) -> None:
    for source in sources:
        load_plugin(source)
