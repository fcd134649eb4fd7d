"""Edges of the reseller service: Mongo stores, the secret cipher, the webhook sender."""
