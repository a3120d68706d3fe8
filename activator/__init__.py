"""Dial Up Deploy activator."""
