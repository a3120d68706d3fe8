"""The admin side (issue 16): history kept in SQLite, and what the panel shows from it."""
