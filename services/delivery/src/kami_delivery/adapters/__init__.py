"""Delivery's adapters: MongoDB collections, the vault cipher, inventory's
internal API, notifications. `ports` declares what the handlers need, so unit
tests substitute fakes."""
