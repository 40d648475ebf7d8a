"""NixTask instantiation: exact repeats are answered from Luigi's instance cache without re-resolving parameters,
and in every case a NixTask class returns the same instances a plain Luigi class would."""

from __future__ import annotations

import luigi
import pytest
from luigi.task_register import Register

from luigi_nixworkflow import NixTask


def _pair(name: str, **params: luigi.Parameter) -> tuple[type, type]:
    """A plain Luigi class and a NixTask class with the same parameters (distinct families)."""
    plain = type(f"Plain{name}", (luigi.Task,), dict(params))
    nix = type(f"Nix{name}", (NixTask,), dict(params, produce=lambda self, out: None))
    return plain, nix


@pytest.fixture(autouse=True)
def _fresh_cache():
    Register.clear_instance_cache()
    yield
    Register.clear_instance_cache()


def test_an_exact_repeat_skips_parameter_resolution(monkeypatch):
    _, cls = _pair("Repeat", i=luigi.IntParameter(), s=luigi.Parameter())
    first = cls(1, s="a")
    calls = []
    original = cls.get_param_values.__func__
    monkeypatch.setattr(cls, "get_param_values",
                        classmethod(lambda c, *a: calls.append(a) or original(c, *a)))
    assert cls(1, s="a") is first
    assert calls == []  # answered without Luigi's resolution
    assert cls(2, s="a") is not first and len(calls) == 2  # a new one: Register and __init__ resolve it


@pytest.mark.parametrize("make", [
    lambda c: (c(1, s="a"), c(1, s="a")),
    lambda c: (c(1, s="a"), c(i=1, s="a")),  # positional or keyword: one instance, as Luigi keys by values
    lambda c: (c(1, s="a"), c(1, s="b")),
    lambda c: (c(1), c(1)),  # s from its default
])
def test_same_instances_as_plain_luigi(make):
    plain, nix = _pair("Same", i=luigi.IntParameter(), s=luigi.Parameter(default="d"))
    p1, p2 = make(plain)
    n1, n2 = make(nix)
    assert (p1 is p2) == (n1 is n2)
    assert n1.param_kwargs == p1.param_kwargs and n2.param_kwargs == p2.param_kwargs


def test_unhashable_values_make_fresh_instances_as_in_luigi():
    plain, nix = _pair("Unhashable", p=luigi.Parameter())
    assert plain(p={"a": 1}) is not plain(p={"a": 1})  # Luigi cannot cache them
    assert nix(p={"a": 1}) is not nix(p={"a": 1})


def test_clearing_luigis_cache_clears_the_shortcut():
    _, cls = _pair("Cleared", i=luigi.IntParameter())
    first = cls(1)
    Register.clear_instance_cache()
    assert cls(1) is not first
    assert cls(1) is cls(1)


def test_disabled_luigi_cache_disables_the_shortcut(monkeypatch):
    _, cls = _pair("Disabled", i=luigi.IntParameter())
    cls(1)
    monkeypatch.setattr(Register, "_Register__instance_cache", None)
    assert cls(1) is not cls(1)


def test_a_value_from_the_config_is_resolved_on_every_call():
    """A parameter left to its config value is not part of the call: a changed config makes another instance,
    exactly as with plain Luigi (the shortcut applies only to calls that give every parameter)."""
    _, cls = _pair("Configured", i=luigi.IntParameter(), level=luigi.Parameter(default="low"))
    config = luigi.configuration.get_config()
    if not config.has_section("NixConfigured"):
        config.add_section("NixConfigured")
    config.set("NixConfigured", "level", "one")
    try:
        first = cls(1)
        assert first.level == "one"
        config.set("NixConfigured", "level", "two")
        second = cls(1)
        assert second.level == "two" and second is not first
    finally:
        config.remove_section("NixConfigured")


def test_a_cache_cleared_through_a_task_class_clears_the_shortcut():
    """Luigi's classmethod called through a task class clears the cache of that class's metaclass (Luigi's
    own lookup then finds it there): the shortcut follows the cache Luigi uses, not Register's."""
    _, cls = _pair("ClassCleared", i=luigi.IntParameter())
    first = cls(1)
    cls.clear_instance_cache()
    try:
        assert cls(1) is not first
        assert cls(1) is cls(1)
    finally:
        del type(cls)._Register__instance_cache
