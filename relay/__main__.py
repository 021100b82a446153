"""``python -m runway_relay``."""

from .cli import main

main()
