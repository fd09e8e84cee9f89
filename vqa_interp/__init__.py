"""vqa-interp: attribution maps of VQA models against human attention (see README.md)."""
from vqa_interp.util.cores import quiet_waiting as _quiet_waiting

_quiet_waiting()   # before torch loads: OpenMP threads that wait sleep soon (vqa_interp.util.cores)
