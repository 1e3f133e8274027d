"""Named registries: a new head, loss, schedule or balancer is one class (or function) plus one
``@REGISTRY.register("name")`` line, and a config names it. Unknown names fail with the choices."""

from __future__ import annotations

import inspect
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            if isinstance(item, type):
                item.registry_name = name
            return item

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(sorted(self._items))}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)


def check_options(cls: type, options: Iterable[str], where: str, supplied: tuple[str, ...] = ()) -> None:
    """Refuse constructor options ``cls`` does not take, naming the ones it does. ``supplied``: the
    arguments the caller passes itself (not the user's to set)."""
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *supplied)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{where} has no option(s) {', '.join(unknown)}; its options: {', '.join(accepted) or 'none'}")
