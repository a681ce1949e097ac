"""Command groups of the `trustforge` CLI (`trustforge models ...`, `keys`, `users`, ...)."""
