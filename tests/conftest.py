"""Test-wide configuration: the one place that sets jax / XLA options and the plot backend."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_platforms", "cpu")


import pytest  # noqa: E402


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(cls, name)`` -> a list that grows by one at every call of ``cls.name``.

    Inside jit a Python function runs only when it is traced, so this counts compilations (the
    idea of chex.assert_max_traces) without reading jit caches, whose entries come and go as the
    objects they are keyed on are collected."""

    def patch(cls, name):
        calls, original = [], getattr(cls, name)

        def counted(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
        return calls

    return patch
