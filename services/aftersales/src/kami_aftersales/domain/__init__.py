"""Aftersales' pure domain: claims against orders, tickets, the automatic
rules, SLA escalation and issue-rate flags. No I/O, no clock."""
