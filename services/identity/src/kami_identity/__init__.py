"""Kami identity service: users, phone OTP, KYC tiers, roles and tokens."""
