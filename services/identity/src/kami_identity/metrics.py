"""Prometheus metrics of the identity service (docs/metrics.md)."""

from __future__ import annotations

from kami_web.passwords import PasswordCheckMetrics

PASSWORD_CHECKS = PasswordCheckMetrics.named("identity", "Login-password")
