"""Composition roots: where each function kind's services are built with their
collaborators, from settings, once per container.

One module per kind, so a function imports only what it serves (the ML stack stays out of
functions without the ML layer):

  core           the JWT signing key and signer, the ledger (shared by every kind)
  auth           AuthService                       (auth function; dev stack seeding)
  billing        BillingService                    (billing function)
  models         ModelService                      (models function)
  registration   Registrar                         (register_model; needs the ML layer)
  predictions    PredictionService, ModelLoader    (predict; needs the ML layer)

Factories are cached: a warm container reuses its services (and their caches). Tests swap
a service with `app.dependency_overrides` or build one with its constructor; a process that
starts acting as another container (the local stack, a test with fresh AWS resources)
calls `forget_components()` once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Protocol

from creditml.settings import reset_settings
from creditml.storage.tables import bind_table


class _Cache(Protocol):
    def cache_clear(self) -> None: ...


_caches: list[_Cache] = []


def remember[C: _Cache](cached: C) -> C:
    """Register a cached function so forget_components() clears it."""
    _caches.append(cached)
    return cached


def component[T](factory: Callable[[], T]) -> Callable[[], T]:
    """Cache `factory` for the life of the container (see forget_components)."""
    return remember(cache(factory))


def forget_components() -> None:
    """Drop every built service, the settings and the table bindings (each holds its own
    connection, to the endpoint of its time): the next use builds them anew from the
    environment, as a fresh container would."""
    for cached in _caches:
        cached.cache_clear()
    bind_table.cache_clear()
    reset_settings()
