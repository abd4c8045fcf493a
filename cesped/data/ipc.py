"""How a ``DataLoader`` worker process sends batches: small tensors by value, large ones shared.

torch sends every CPU tensor between processes through shared memory. With its default
``file_descriptor`` strategy, each tensor costs the receiving process a new socket connection to
the sending worker, with a two-way authentication, to get the file descriptor of the shared
memory, and the worker a shared-memory file and a thread that answers: about 0.8 ms of CPU per
tensor between the two processes on the 2-core benchmark machine, whatever its size. A batch of
:class:`cesped.data.dataset.ParticlesDataset` holds 4 tensors plus one per numeric column of the
metadata (15 for a typical star file), all of them but the images of a few hundred bytes: sent
that way they cost as much CPU as reading and preprocessing the batch, and 2 workers on 2 cores
were no faster than loading in the main process.

:func:`send_small_tensors_by_value`, called in a worker process, makes that process pickle
tensors of at most :data:`BY_VALUE_MAX_BYTES` as their bytes (copied through the pipe with the
rest of the batch, no round trip) and leaves larger ones to torch. The receiving process gets
tensors of the same dtype, shape and values; only ``is_shared()`` differs for the small ones.

Example usage (what ``ParticlesDataset`` does on its first batch in each worker)::

    if torch.utils.data.get_worker_info() is not None:
        send_small_tensors_by_value()
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["BY_VALUE_MAX_BYTES", "send_small_tensors_by_value", "reduce_tensor_small_by_value"]

#: tensors up to this many bytes are pickled by value (a batch's labels and metadata columns;
#: not its images: 32 images of 128 px are 2 MiB)
BY_VALUE_MAX_BYTES = 64 * 1024

_BY_VALUE_DTYPES = {
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
}


def _tensor_from_bytes(data: bytes, dtype: str, shape: tuple) -> torch.Tensor:
    """Inverse of :func:`reduce_tensor_small_by_value` (runs in the receiving process)."""
    return torch.from_numpy(np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy())


def reduce_tensor_small_by_value(tensor: torch.Tensor):
    """Pickle reduction of a tensor: its bytes when small, otherwise torch's shared memory.

    Parameters
    ----------
    tensor : torch.Tensor

    Returns
    -------
    tuple
        ``(rebuild, args)`` as ``__reduce__``. By value: plain CPU strided tensors without
        autograd history of a NumPy-compatible dtype and at most :data:`BY_VALUE_MAX_BYTES`;
        everything else goes to :func:`torch.multiprocessing.reductions.reduce_tensor`.
    """
    from torch.multiprocessing.reductions import reduce_tensor

    if (
        type(tensor) is torch.Tensor
        and tensor.device.type == "cpu"
        and tensor.layout == torch.strided
        and not tensor.requires_grad
        and tensor.dtype in _BY_VALUE_DTYPES
        and tensor.numel() * tensor.element_size() <= BY_VALUE_MAX_BYTES
    ):
        a = tensor.resolve_conj().resolve_neg().contiguous().numpy()
        return _tensor_from_bytes, (a.tobytes(), a.dtype.str, tuple(a.shape))
    return reduce_tensor(tensor)


def send_small_tensors_by_value() -> None:
    """Make this process send small tensors by value through ``multiprocessing`` queues and pipes.

    Changes the pickler of this process only (``ForkingPickler``, which the ``DataLoader``'s queues
    use); call it in a worker process, not in the process that receives the batches.
    """
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401  (registers torch's reductions first)

    ForkingPickler.register(torch.Tensor, reduce_tensor_small_by_value)
