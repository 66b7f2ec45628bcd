"""Search evaluates tiny batches; one intra-op thread is faster for them than two, and far faster
when the machine is oversubscribed (a second OpenMP thread waits on a descheduled core)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
