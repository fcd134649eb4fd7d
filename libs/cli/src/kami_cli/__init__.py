"""`kami`: the operator CLI of Kami (`kami --help`)."""
