#!/usr/bin/env python3
"""Time to reject, for scripts/flood: sends COUNT requests one after another on one keep-alive
connection with a sheddable key while the flood runs, and prints the median and p99 time of
the 503 answers (client-side, loopback, so it includes the client's own overhead)."""
import http.client
import json
import statistics
import sys
import time

host, port, key, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16})
headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
shed, other = [], 0
conn = http.client.HTTPConnection(host, port, timeout=10)
for _ in range(count):
    start = time.perf_counter()
    try:
        conn.request("POST", "/v1/chat/completions", body, headers)
        r = conn.getresponse()
        r.read()
    except OSError:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        other += 1
        continue
    took = (time.perf_counter() - start) * 1000
    if r.status == 503 and r.getheader("x-should-retry") == "false":
        shed.append(took)
    else:
        other += 1
    time.sleep(0.02)
if shed:
    shed.sort()
    p99 = shed[min(len(shed) - 1, int(len(shed) * 0.99))]
    print(f"reject: {len(shed)} sheddable probes shed, median {statistics.median(shed):.3f} ms, "
          f"p99 {p99:.3f} ms ({other} admitted or failed)")
else:
    print(f"reject: no probe was shed ({other} admitted or failed)")
