"""Storage, channel gateways and password hashing: the edges of the payment service."""
