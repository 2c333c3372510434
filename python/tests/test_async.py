"""AsyncDaemonClient: the same calls as coroutines, and streaming as an async iterator."""

from __future__ import annotations

import asyncio

import pytest

from mcli_daemon import AsyncDaemonClient, CommandFailed, CommandNotFound, DaemonClientConfig


def run(coroutine):
    return asyncio.run(coroutine)


def test_calls_over_the_socket_start_the_server(mcli):
    async def main():
        client = AsyncDaemonClient()
        assert await client.is_running() is False
        result = await client.execute_command("hello", ["Ada"])
        assert result["output"] == "Hello Ada!\n" and result["success"]
        assert await client.is_running() is True
        assert (await client.health_check())["status"] == "healthy"
        assert (await client.status())["running"] is True
        assert (await client.list_commands())["total"] >= 5
        assert (await client.history(limit=1))[0]["command"] == "hello"
        with pytest.raises(CommandNotFound):
            await client.execute_command("helo")
        with pytest.raises(CommandFailed):
            await client.execute_command("exit", ["1"], check=True)

    run(main())


def test_concurrent_calls_start_one_server(mcli):
    async def main():
        client = AsyncDaemonClient()
        results = await asyncio.gather(*(client.execute_command("echo", [str(n)]) for n in range(8)))
        assert [result["output"] for result in results] == [f"{n}\n" for n in range(8)]

    run(main())


def test_stream_and_cancel(mcli):
    mcli.script("ticker", "echo first\nexec sleep 30\n")

    async def main():
        client = AsyncDaemonClient()
        stream = client.stream("ticker")
        async with stream:
            async for chunk in stream:
                assert chunk == (chunk.stream, b"first\n", chunk.id)
                assert await client.cancel(chunk.id) is True
        assert stream.result["status"] == "cancelled"

    run(main())


def test_over_http(mcli):
    url = "http://" + mcli.start("--http", "127.0.0.1:0")["http"]

    async def main():
        client = AsyncDaemonClient(DaemonClientConfig(url=url))
        assert await client.is_running()
        assert (await client.execute_command("hello"))["output"] == "Hello World!\n"
        chunks = [chunk async for chunk in client.stream("echo", ["hi"])]
        assert [chunk.data for chunk in chunks] == [b"hi\n"]

    run(main())
