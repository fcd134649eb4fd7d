"""The payment service's domain: pure rules, no I/O."""
