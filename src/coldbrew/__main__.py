"""`python -m coldbrew` is the `coldbrew` command."""

from coldbrew.cli.main import main

main()
