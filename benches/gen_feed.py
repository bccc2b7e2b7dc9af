#!/usr/bin/env python3
"""Deterministic partner feed for the ingestion benchmark (benches/ingest.sh).

Writes JSON Lines with the field names of ../shared/contract/feeds/partner-feed.jsonl and, with
--csv, the same rows as CSV for the raw bulk loads (PostgreSQL COPY, MariaDB LOAD DATA, SQLite).

Shape (seedable, same output for the same arguments):
- The file is the concatenation of partner deliveries: each partner's section lists hotels in
  order and each hotel's pictures together, as partner feeds are produced (so a batch touches a
  few hundred hotels, not all of them).
- About 80% of the lines are new pictures of the partner's own CDN.
- About 20% are duplicates across partners: a picture an earlier partner delivered, under
  another spelling of its URL (host case, default port, tracking parameter, fragment), mostly
  for the same hotel (DEDUPLICATED) and sometimes for a sister hotel (LINKED: shared images).
- About 0.2% of the lines are rejected (an ftp:// URL).
- Every line has its own legacy ID, a size, a quality score and one or two model tags.
"""
import argparse
import csv
import json
import random
import sys

CATEGORIES = ["POOL", "BEDROOM", "BATHROOM", "LOBBY", "EXTERIOR", "RESTAURANT", "VIEW", "FITNESS"]


def spellings(url, rng):
    """Another spelling of `url` with the same canonical form."""
    scheme, rest = url.split("://", 1)
    host, path = rest.split("/", 1)
    variant = rng.randrange(4)
    if variant == 0:
        return f"{scheme.upper()}://{host.upper()}/{path}"
    if variant == 1:
        return f"{scheme}://{host}:443/{path}?utm_source=feed{rng.randrange(100)}"
    if variant == 2:
        return f"{scheme}://{host}/{path}#gallery"
    return f"{scheme}://{host.upper()}:443/{path}?gclid=x{rng.randrange(1000)}#top"


def generate(lines, partners, hotels, seed):
    rng = random.Random(seed)
    per_partner = lines // partners
    shared_ratio = 0.2
    # Pictures delivered so far, per hotel: (canonical url, hotel). Later partners draw their
    # duplicates from here.
    delivered = {}
    n = 0
    for p in range(1, partners + 1):
        count = per_partner if p < partners else lines - per_partner * (partners - 1)
        # Each partner covers all hotels in order; pictures per hotel vary around the mean.
        mean = count / hotels
        written = 0
        hotel = 1
        while written < count:
            k = min(count - written, max(1, int(rng.expovariate(1 / mean)) + 1)) if hotel < hotels else count - written
            for _ in range(k):
                n += 1
                row = {"partner_id": p, "hotel_id": hotel}
                earlier = delivered.get(hotel)
                if p > 1 and earlier and rng.random() < shared_ratio * partners / (partners - 1):
                    url, _ = earlier[rng.randrange(len(earlier))]
                    row["url"] = spellings(url, rng)
                    if rng.random() < 0.25:
                        # A sister hotel shows the same picture (shared inventory).
                        row["hotel_id"] = hotel + 1 if hotel < hotels else hotel - 1
                elif rng.random() < 0.002:
                    # A bad line now and then (it goes to the rejects file).
                    row["url"] = f"ftp://img.partner{p}.example/h{hotel}/{n}.jpg"
                else:
                    url = f"https://img.partner{p}.example/h{hotel}/{n}.jpg"
                    delivered.setdefault(hotel, []).append((url, hotel))
                    row["url"] = url
                row["partner_image_ref"] = f"r{p}-{n}"
                row["legacy_id"] = f"L{p}-{n}"
                w = rng.choice([640, 1024, 1600, 2048])
                row["width"] = w
                row["height"] = w * 2 // 3
                tags = rng.sample(CATEGORIES, rng.choice([1, 1, 2]))
                row["tags"] = [{"category": c, "confidence": round(rng.uniform(0.5, 1), 2)} for c in tags]
                row["quality_score"] = round(rng.uniform(0.2, 1), 2)
                yield row
            written += k
            hotel = hotel + 1 if hotel < hotels else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--partners", type=int, default=4)
    ap.add_argument("--hotels", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True, help="the JSON Lines file")
    ap.add_argument("--csv", help="also write the rows as CSV (no header) for raw bulk loads")
    args = ap.parse_args()
    out = open(args.out, "w", encoding="utf-8")
    raw = open(args.csv, "w", encoding="utf-8", newline="") if args.csv else None
    writer = csv.writer(raw, lineterminator="\n") if raw else None
    for row in generate(args.lines, args.partners, args.hotels, args.seed):
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
        if writer:
            tags = ";".join(f"{t['category']}:{t['confidence']}" for t in row["tags"])
            writer.writerow([row["partner_id"], row["hotel_id"], row["url"], row["partner_image_ref"],
                             row["legacy_id"], row["width"], row["height"], tags, row["quality_score"]])
    out.close()
    if raw:
        raw.close()


if __name__ == "__main__":
    sys.exit(main())
