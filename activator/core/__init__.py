"""Pure decisions: no I/O, no asyncio; time is an argument."""
