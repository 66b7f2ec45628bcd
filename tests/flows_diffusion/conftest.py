"""Honour OMP_NUM_THREADS=1 for this folder's tests (the shared machine's rule): the root conftest
sets 2 torch threads, which on an oversubscribed 2-core machine makes small ops wait for each other."""
import os

import torch

if os.environ.get("OMP_NUM_THREADS") == "1":
    torch.set_num_threads(1)
