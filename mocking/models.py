"""No database tables of its own."""
