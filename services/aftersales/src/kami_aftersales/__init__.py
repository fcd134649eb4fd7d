"""Kami aftersales service: tickets, auto-resolution, escalation, compensations and issue
analytics.
"""
