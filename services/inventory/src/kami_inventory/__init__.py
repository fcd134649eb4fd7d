"""Kami inventory service: encrypted key pools per offer, reservations and near-expiry blocking."""
