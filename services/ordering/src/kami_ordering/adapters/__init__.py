"""Adapters at the edge of ordering: the order repository over the event
store, and the MongoDB read models (offers, order views, deadlines, timeline,
idempotency records)."""
