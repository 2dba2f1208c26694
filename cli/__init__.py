"""The ``loe`` command-line interface (Typer): argument parsing only; the work is in :mod:`loe_codec`."""
