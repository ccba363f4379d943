"""Thin typer CLI: each command parses, loads config, calls one library function, renders."""
