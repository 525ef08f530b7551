"""The sample applications' boot: what a real application does once per process before a batch's
code runs (framework setup, configuration, models), simulated by a sleep at import.

`BATCHGATE_SAMPLE_BOOT_SECONDS` is in scaled seconds, standing for the application's boot (a real
one takes seconds to tens of seconds). Each sample package imports this module, so
`python -m payroll.calculate ...` pays the boot once per process, and the warm lane's preload run mode
pays it once per pool task (the zygote imports the package) instead of once per job.

The default is 0: the local stack, its integration tests and `make bench` (whose empty command,
`reports.export noop`, measures batchgate's own overhead) run these samples as processes and stay
as fast as before. What compares preload with a fresh process sets it, for both lanes.
"""

from __future__ import annotations

import os
import time

BOOT_VARIABLE = "BATCHGATE_SAMPLE_BOOT_SECONDS"

time.sleep(float(os.environ.get(BOOT_VARIABLE) or 0))
