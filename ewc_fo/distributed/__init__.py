"""Distributed execution of label runs (Ray). The engine imports nothing from here."""
