"""The evidence ledger (SOC 2 Type II): append-only, hash-chained records of every decision."""
