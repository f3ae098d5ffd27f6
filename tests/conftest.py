"""Settings every test process starts from.

The daily partitions are built once per process, when `cs_pipeline.partitions` is first imported,
and by default from the first `events/date=...` folder of `CS_PIPELINE_DATA_DIR` (here: whatever
`data/demo` a developer last generated). Tests use days from 2025 on, so the process's partitions
start on a fixed early day; each test's own first partition is what its environment says when it
runs (`cs_pipeline.partitions.first_day`), e.g. the planted data set's first day.
"""

import os

os.environ["CS_PIPELINE_START_DATE"] = "2025-01-01"
