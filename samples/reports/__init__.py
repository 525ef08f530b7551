"""Sample reports batch."""
