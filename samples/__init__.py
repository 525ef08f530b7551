"""Sample batch programs: stand-ins for the application's container images, run by the local stack."""
