"""Liveness records of the background processes, read by /healthz and /metrics."""

from __future__ import annotations

from django.db import models


class BeatLease(models.Model):
    """Who may run the beat schedule. Exactly one beat holds it; renewing it is also beat's heartbeat.

    A beat takes the lease with a conditional UPDATE when it is free or expired, and renews it on every tick while it
    holds it; a second beat waits in standby and takes over only after the holder stopped renewing.
    """

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=255, blank=True, help_text="host and pid of the beat holding the lease")
    acquired_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or 'free'}"


class Heartbeat(models.Model):
    """The last time a background role proved it works (the worker: a task sent by beat ran)."""

    name = models.CharField(max_length=64, primary_key=True)
    beat_at = models.DateTimeField()
    detail = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
