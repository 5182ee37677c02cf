"""Stateless CLI scripts, one external call each (see the script contract in docs/ARCHITECTURE.md)."""
