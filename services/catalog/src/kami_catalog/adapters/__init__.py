"""The catalog's edge: event stores, the consumed-event log, read models."""
