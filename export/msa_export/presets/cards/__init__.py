"""Built-in preset cards (TOML data files)."""
