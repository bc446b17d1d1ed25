"""Deprecated alias of bnstudy.spec.claims, kept for one release (pre-registered hypotheses)."""

from __future__ import annotations

from bnstudy.spec.claims import (
    HYPOTHESIS_ID,
    REGISTRATION_KEY,
    Hypothesis,
    Interaction,
    designs,
    hypothesis_sha256,
    registered_at,
    registered_hashes,
    registration,
    registration_to_record,
    resolved,
)

__all__ = [
    "HYPOTHESIS_ID",
    "REGISTRATION_KEY",
    "Hypothesis",
    "Interaction",
    "designs",
    "hypothesis_sha256",
    "registered_at",
    "registered_hashes",
    "registration",
    "registration_to_record",
    "resolved",
]
