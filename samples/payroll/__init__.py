"""Sample payroll batch."""
