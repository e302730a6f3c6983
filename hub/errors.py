"""The project's exception tree: one root, :class:`HubError`, so a caller can catch every error
the hub raises on purpose and nothing else.

Bad input (a caller's argument, a corrupt packet, a malformed setting) derives from
:class:`ValueError` too, so existing ``except ValueError`` boundaries (the control plane's
RESULT_INVALID_ARGUMENT, the CLIs' clear messages) keep treating it as the caller's mistake.
Kernel failures carry the C status code (``KernelError.status``).
"""

from __future__ import annotations

#: nk_common.h status codes (mirrored here so errors can be built without the library).
NK_OK, NK_ERR_ARG, NK_ERR_NOMEM, NK_ERR_CAPACITY, NK_ERR_CORRUPT, NK_ERR_STATE = (
    0, -1, -2, -3, -4, -5)


class HubError(Exception):
    """Root of every error the hub raises deliberately."""


class InvalidInput(HubError, ValueError):
    """Bad input from the caller: wrong shape, range, dtype or bytes."""


class InvalidDtype(InvalidInput, TypeError):
    """An array of the wrong type or dtype (also a TypeError, as numpy would raise)."""


class ReadOnlyBuffer(InvalidInput):
    """An output array the kernels would write into is read-only (e.g. a view of ``bytes``)."""


class KernelError(HubError, RuntimeError):
    """A kernel call returned an error status; ``status`` is the nk_* code (None: no call)."""

    def __init__(self, message: str, status: int | None = None, call: str = "") -> None:
        super().__init__(message)
        self.status, self.call = status, call


class KernelArgumentError(KernelError, ValueError):
    """NK_ERR_ARG: the kernel refused its arguments (settings, shapes, ranges)."""


class KernelCorruptInput(KernelError, ValueError):
    """NK_ERR_CORRUPT: the bytes given to a decoder are not a valid stream."""


class KernelOutOfMemory(KernelError, MemoryError):
    """NK_ERR_NOMEM."""


class LibraryError(KernelError):
    """The kernels library is missing, stale, or does not match the Python side (ABI check)."""


_BY_STATUS: dict[int, type[KernelError]] = {
    NK_ERR_ARG: KernelArgumentError,
    NK_ERR_CORRUPT: KernelCorruptInput,
    NK_ERR_NOMEM: KernelOutOfMemory,
}


def kernel_error(status: int, call: str, text: str) -> KernelError:
    """The exception for a failed kernel call (the subclass follows the status)."""
    cls = _BY_STATUS.get(status, KernelError)
    return cls(f"{call}: {text} (status {status})", status=status, call=call)
