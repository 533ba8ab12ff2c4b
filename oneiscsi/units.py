"""Units of size."""

MIB = 1024 * 1024


def whole_mib(size: int) -> int:
    """Bytes as whole MiB, rounded up."""
    return -(-size // MIB)
