"""Kami catalog service: categories, products, seller offers, reviews and search."""
