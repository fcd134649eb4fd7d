"""`python -m kami_cli` is `kami`."""

from kami_cli.main import main

main()
