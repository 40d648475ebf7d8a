"""Luigi's instance cache, answered without re-resolving parameters when a call repeats exactly.

A cached NixTask's key covers its upstream tasks, so checking a graph calls every `requires()`, and
each `Upstream(i)` there goes through Luigi's `Register.__call__`, which resolves every parameter
(normalising each value, consulting the config for missing ones, scanning the config for unconsumed
keys) only to find the instance it made before. When a call names a value for every parameter, no
default and no config enters the result: the same arguments always resolve to the same parameter
values, so the same instance. Such calls are remembered by their raw arguments after Luigi's own path
made the instance, and answered from there while Luigi's cache is the same one (clearing Luigi's
cache, or disabling it, clears or bypasses this one too). Any other call takes Luigi's path.
"""

from __future__ import annotations

from typing import Any

from luigi.task_register import Register

_CACHE_ATTR = "_Register__instance_cache"  # Luigi's cache (Register.clear_instance_cache() replaces it)
_FAST: dict[type, tuple[dict[Any, Any], dict[Any, Any]]] = {}  # class -> (the Luigi cache it follows, its calls)


class Instances(Register):
    """The metaclass of NixTask: Luigi's Register, plus the exact-repeat shortcut above."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        luigi_cache = getattr(cls, _CACHE_ATTR)  # (the lookup Luigi makes: a class may have a cache of its own)
        if luigi_cache is None:  # Luigi's cache disabled: so is this one
            return super().__call__(*args, **kwargs)
        slot = _FAST.get(cls)
        if slot is None or slot[0] is not luigi_cache:
            slot = _FAST[cls] = (luigi_cache, {})
        complete = len(args) + len(kwargs) == len(cls.get_params())
        key = (args, tuple(kwargs.items())) if complete else None
        if key is not None:
            try:
                return slot[1][key]
            except KeyError:
                pass
            except TypeError:  # an unhashable value: Luigi decides (it does not cache those either)
                key = None
        instance = super().__call__(*args, **kwargs)
        if key is not None and _cached_by_luigi(instance):
            slot[1][key] = instance
        return instance


def _cached_by_luigi(instance: Any) -> bool:
    """Did Luigi cache the instance? Only when its parameter values hash (Luigi's cache key is made of them). A
    class whose __init__ forgot super().__init__() has none: Luigi's worker refuses it with its own clear error."""
    params = getattr(instance, "param_kwargs", None)
    if params is None:
        return False
    try:
        hash(tuple(params.items()))
    except TypeError:
        return False
    return True
