"""Kami payment service: payment intents, channels, the double-entry ledger, deposits,
refunds and settlement.
"""
