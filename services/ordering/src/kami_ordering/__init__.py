"""Kami ordering service: orders and the purchase saga."""
