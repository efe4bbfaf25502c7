"""The one registry of classes that a checkpoint, an export or a config may name.

A file never chooses what code runs: a ``class_path`` read from a checkpoint's hyperparameters or
an export's metadata is looked up here, by name, and anything not registered is refused *before
any import*. (Importing by path would run any module on ``sys.path`` -- under ``python -m`` that
includes the current folder, so an ``evil.py`` next to a downloaded checkpoint.)

The project's classes register themselves where they are defined (``@register("backbone")``);
:func:`ensure_builtins` imports those defining modules, a fixed list written here. A user who
wants their own backbone registers it in code before loading::

    from common.registry import register_backbone
    register_backbone("MyDiT", MyDiT)          # or: @register("backbone") on the class

A registered class is found by its name (``"WindowedDiT"``), by its full dotted path
(``"models.dit.WindowedDiT"``) or by the path through any package above its module
(``"models.WindowedDiT"``), so configs and checkpoints written with class paths keep loading.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

ClassT = TypeVar("ClassT", bound=type)

# Per kind, the modules that define (and so register) the project's own classes; imported on
# the first lookup of that kind.
_BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "backbone": ("models.dit", "models.unet.space_time_unet", "models.unet.unet3d"),
    "diffusion": ("walt.diffusion.gaussian",),
    "tokenizer": ("tokenizer.network.vae",),
    "sampler": ("walt.samplers.registry",),
    "module": ("walt.lightning.module", "tokenizer.training.module"),
}
KINDS: tuple[str, ...] = tuple(_BUILTIN_MODULES)

_CLASSES: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


class RefusedClassError(ValueError):
    """A file named a class that is not in the registry."""


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")


def register_class(kind: str, cls: ClassT, *, name: str | None = None) -> ClassT:
    """Register ``cls`` under ``kind`` (``"backbone"``, ``"diffusion"``, ...) as ``name``.

    Args:
        kind: one of :data:`KINDS`.
        cls: the class (or factory) to register.
        name: lookup name; default ``cls.__name__``.
    """
    _check_kind(kind)
    name = name or cls.__name__
    known = _CLASSES[kind].get(name)
    if known is not None and known is not cls:
        raise ValueError(f"{kind} name {name!r} is already registered to {known!r}")
    _CLASSES[kind][name] = cls
    return cls


def register(kind: str, name: str | None = None) -> Callable[[ClassT], ClassT]:
    """Class decorator form of :func:`register_class`."""

    def decorate(cls: ClassT) -> ClassT:
        return register_class(kind, cls, name=name)

    return decorate


def register_backbone(name: str, cls: type) -> type:
    """Register a user backbone so that configs, checkpoints and exports may name it."""
    return register_class("backbone", cls, name=name)


def ensure_builtins(kind: str) -> None:
    """Import the modules that register the project's ``kind`` classes (a fixed list in code)."""
    for module in _BUILTIN_MODULES[kind]:
        importlib.import_module(module)


def _paths(name: str, cls: type) -> Iterator[str]:
    """The names a registered class answers to: its name, its dotted paths through packages."""
    yield name
    parts = getattr(cls, "__module__", "").split(".")
    qualname = getattr(cls, "__qualname__", name)
    for end in range(len(parts), 0, -1):
        yield ".".join([*parts[:end], qualname])


def registered(kind: str) -> dict[str, type]:
    """The classes of ``kind`` by name (a copy)."""
    _check_kind(kind)
    ensure_builtins(kind)
    return dict(_CLASSES[kind])


def resolve(kind: str, class_path: str) -> type:
    """The registered class of ``kind`` named ``class_path``; nothing is imported from the name.

    Raises:
        RefusedClassError: naming the refused class and listing the registered ones.
    """
    _check_kind(kind)
    ensure_builtins(kind)
    if isinstance(class_path, str):
        for name, cls in _CLASSES[kind].items():
            if class_path in _paths(name, cls):
                return cls
    raise RefusedClassError(
        f"unknown {kind} {class_path!r} refused: only registered classes are built; registered "
        f"{kind} classes: {sorted(_CLASSES[kind])} (register your own in code with "
        "common.registry.register)"
    )


def build(kind: str, spec: Mapping[str, Any]) -> Any:
    """Instantiate a ``{"class_path": ..., "init_args": {...}}`` spec through the registry."""
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise ValueError(f"a {kind} spec must be a mapping with a 'class_path', got {spec!r}")
    cls = resolve(kind, spec["class_path"])
    init_args = spec.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise ValueError(f"init_args of {spec['class_path']!r} must be a mapping")
    return cls(**init_args)
