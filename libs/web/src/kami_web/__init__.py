"""What every Kami HTTP API shares."""
