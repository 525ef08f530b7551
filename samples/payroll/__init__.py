"""Sample payroll batch."""

import application_boot  # noqa: F401  (the application boots once per process)
