"""Sample attendance batch."""
