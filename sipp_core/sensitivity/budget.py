"""The engines' working memory: how large their chunks may be, and buffers reused across layers."""
from __future__ import annotations

import torch

DEFAULT_CHUNK_BYTES = 512 * 2**20

# working tensors are also kept below this size when chunk_bytes is larger: small
# temporaries stay in cache and are recycled by the allocator instead of being
# mapped fresh from the OS on every call
_CACHE_FRIENDLY_BYTES = 4 * 2**20
_BIG_BYTES = 64 * 2**20  # the screened engine's working set: a span's bounds and one chunk
_GPU_STEP_BYTES = 256 * 2**20


class _Budget:
    """Sizes of chunked temporaries (float32 elements) and a workspace of reusable buffers.

    One budget serves every layer of a compute_sensitivities call, so its buffers are
    allocated (and their pages touched) once, not once per layer and chunk.
    """

    def __init__(self, chunk_bytes: int, device=None):
        self.bytes = chunk_bytes
        self._store: dict = {}
        gpu = device is not None and torch.device(device).type == "cuda"
        # CPU: small, cache-resident steps; GPU: large ones (kernel launches dominate)
        self._small = _GPU_STEP_BYTES if gpu else _CACHE_FRIENDLY_BYTES
        self._big = _GPU_STEP_BYTES if gpu else _BIG_BYTES

    def elems(self, copies: int = 1) -> int:
        return max(1, min(self.bytes, self._small) // (4 * copies))

    def big_elems(self, copies: int = 1) -> int:
        """For operands that benefit from large batches (matrix products)."""
        return max(1, min(self.bytes, self._big) // (4 * copies))

    def buffer(self, key: str, shape, dtype=torch.float32, device=None) -> torch.Tensor:
        """An uninitialised tensor of ``shape``; the same storage is reused for ``key``."""
        numel = 1
        for d in shape:
            numel *= int(d)
        k = (key, dtype, torch.device(device) if device is not None else torch.device("cpu"))
        buf = self._store.get(k)
        if buf is None or buf.numel() < numel:
            self._store[k] = buf = torch.empty(max(numel, 1), dtype=dtype, device=k[2])
        return buf[:numel].view(tuple(int(d) for d in shape))
