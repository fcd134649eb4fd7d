"""Aftersales' edges: MongoDB read models and counters, and the HTTP clients
of delivery's key verification and ordering's order timeline."""
