"""Kami delivery service: delivering keys to buyers, the buyer key vault and notifications."""
