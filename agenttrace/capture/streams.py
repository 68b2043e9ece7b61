"""Stream tees: the caller's chunks pass through unchanged and are reported as it reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from .exchange import Exchange


def tee(chunks: Iterator[bytes], exchange: Exchange) -> Iterator[bytes]:
    """Yield the client's chunks unchanged, reporting each as the caller reads it."""
    try:
        for data in chunks:
            exchange.chunk(data)
            yield data
    except GeneratorExit:
        raise
    except BaseException as exc:
        exchange.fail(exc)
        raise
    finally:
        exchange.close()


async def atee(chunks: AsyncIterator[bytes], exchange: Exchange) -> AsyncIterator[bytes]:
    try:
        async for data in chunks:
            exchange.chunk(data)
            yield data
    except GeneratorExit:
        raise
    except BaseException as exc:
        exchange.fail(exc)
        raise
    finally:
        exchange.close()
