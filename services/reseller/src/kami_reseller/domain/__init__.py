"""The reseller domain: pure, no I/O."""
