"""`python -m livermets ...` (and `torchrun ... -m livermets train ...`) runs the CLI."""

from livermets.cli import main

main()
