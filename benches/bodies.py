#!/usr/bin/env python3
"""Request bodies of the load benchmark, one JSON body per line (for `oha -Z`).

    bodies.py SCENARIO HOTELS [COUNT] > file

SCENARIO is S1 (`SearchResultsMainImages`, 50 distinct hotels per request), S2 (`HotelGallery`,
first 30) or MIX (90% S1, 10% S2, interleaved). Hotel IDs follow a Zipf distribution (s = 1.0)
over all HOTELS hotels, ranks mapped to IDs by a fixed permutation (so that the popular hotels
are spread over the ID space, not the first IDs). The random seed is fixed: the same arguments
give the same file.
"""
import bisect
import itertools
import json
import random
import sys
from pathlib import Path

OPERATIONS = Path(__file__).resolve().parent.parent / "schema" / "operations" / "frontend"
S = 1.0
REPRESENTATIONS = 50
GALLERY_FIRST = 30


def zipf_sampler(n, rng):
    cumulative = list(itertools.accumulate(1.0 / (k**S) for k in range(1, n + 1)))
    total = cumulative[-1]
    # A multiplier coprime with n permutes 0..n-1.
    step = 7_919_993 if n % 7_919_993 else 7_919_999
    while gcd(step, n) != 1:
        step += 2

    def sample():
        rank = bisect.bisect_left(cumulative, rng.random() * total)  # 0-based
        return (rank * step) % n + 1

    return sample


def gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def s1(sample, query):
    ids = []
    while len(ids) < REPRESENTATIONS:
        hotel = sample()
        if hotel not in ids:
            ids.append(hotel)
    reps = [{"__typename": "Hotel", "id": str(h)} for h in ids]
    return {"operationName": "SearchResultsMainImages", "query": query, "variables": {"representations": reps}}


def s2(sample, query):
    return {"operationName": "HotelGallery", "query": query, "variables": {"id": str(sample()), "first": GALLERY_FIRST}}


def operation(name):
    """The consumer's operation without its comment lines, as a gateway sends it."""
    lines = (OPERATIONS / f"{name}.graphql").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def main():
    scenario, hotels = sys.argv[1], int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    rng = random.Random(20261129)
    sample = zipf_sampler(hotels, rng)
    q1 = operation("SearchResultsMainImages")
    q2 = operation("HotelGallery")
    out = sys.stdout
    for i in range(count):
        if scenario == "S1" or (scenario == "MIX" and i % 10 != 9):
            body = s1(sample, q1)
        elif scenario in ("S2", "MIX"):
            body = s2(sample, q2)
        else:
            sys.exit(f"unknown scenario {scenario}")
        out.write(json.dumps(body, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
