"""`python -m app.cli`: the same as the `notify` command."""

from app.cli import main

main()
