import os

# The fits are many small matrix operations: one BLAS thread is faster than a pool of spinning
# threads (bench/README.md: 4.4 s -> 3.3 s for the 5,350-patient ladder). Set before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402

from core.cli import main  # noqa: E402

sys.exit(main())
