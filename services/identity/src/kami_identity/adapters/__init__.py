"""Identity's adapters: Mongo stores, cryptography, passwords, SMS and the
advanced-verification provider. `ports` declares what the handlers need."""
