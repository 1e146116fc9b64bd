"""Replacing a signal's receivers for one test (what the app connected comes back after it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.dispatch import Signal


def only_receivers(monkeypatch: pytest.MonkeyPatch, signal: Signal, *receivers: Callable[..., object]) -> None:
    """`signal` reaches only `receivers` until the test ends (strong references: lambdas are fine)."""
    monkeypatch.setattr(signal, "receivers", [])
    monkeypatch.setattr(signal, "sender_receivers_cache", {})
    for receiver in receivers:
        signal.connect(receiver, weak=False)


def also_receiver(monkeypatch: pytest.MonkeyPatch, signal: Signal, receiver: Callable[..., object]) -> None:
    """`signal` reaches `receiver` too until the test ends, besides what the apps connected."""
    monkeypatch.setattr(signal, "receivers", list(signal.receivers))
    monkeypatch.setattr(signal, "sender_receivers_cache", {})
    signal.connect(receiver, weak=False)
