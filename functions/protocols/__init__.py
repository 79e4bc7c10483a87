"""Photo protocols and capture sessions API."""
