"""Kami reseller service (分站/代理)."""
