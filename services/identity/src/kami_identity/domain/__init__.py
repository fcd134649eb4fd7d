"""Identity's pure model: the `User` aggregate, phone and resident-ID rules,
the tier table, OTP challenges and refresh-token families. No I/O, no clock:
times are passed in."""
