"""Delivery's domain: pure rules, no I/O and no clock (times come in as arguments)."""
