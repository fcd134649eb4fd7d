"""Payment channels: one adapter per external gateway, and the local simulator
that stands in for the real gateways."""
