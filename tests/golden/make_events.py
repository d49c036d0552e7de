#!/usr/bin/env python3
"""Writes events.csv: the input of the golden window tests.

`ts,key,value` rows in arrival order, with bounded disorder, some records
seconds late (behind the watermark of any small out-of-orderness), bursts
separated by quiet gaps (so session windows open, merge and close), and
duplicates of timestamps. Deterministic: a fixed seed, no clock.
"""
import random

rng = random.Random(20261123)
t = 1_700_000_000_000
rows = []
for burst in range(40):
    n = rng.randint(20, 120)
    for _ in range(n):
        t += rng.choice([0, 7, 13, 37, 50, 90, 150])
        key = "k%d" % rng.randrange(5)
        ts = t - rng.randrange(0, 900)          # disorder up to 0.9 s
        if rng.random() < 0.04:
            ts = t - rng.randrange(1500, 12000)  # late by seconds
        rows.append((ts, key, rng.randrange(1000)))
    # A quiet gap: longer than some session gaps, shorter than others.
    t += rng.choice([300, 800, 1600, 2500, 6000])

with open("events.csv", "w") as f:
    f.write("ts,key,value\n")
    for ts, key, value in rows:
        f.write("%d,%s,%d\n" % (ts, key, value))
print("events.csv: %d rows" % len(rows))
