"""Refresh ``policies/catalog-index.yaml`` from the SOC 2 catalog JSON (outside the repository).

    python tools/catalog_index.py ../shared/docs/soc2-catalog.json > policies/catalog-index.yaml

Only facts are copied: each check's id, provider and resource types, in catalog order.
"""

from __future__ import annotations

import json
import sys

import yaml


def main(path: str) -> None:
    """Print the index YAML for the catalog at *path*."""
    with open(path, encoding="utf-8") as fh:
        catalog = json.load(fh)
    checks = [{"id": c["id"], "provider": c["provider"], "resources": list(c.get("resources") or [])}
              for c in catalog["checks"]]
    sys.stdout.write("# SOC 2 catalog check ids (facts from soc2-catalog.json); regenerate with\n"
                     "# python tools/catalog_index.py <soc2-catalog.json> > policies/catalog-index.yaml\n")
    sys.stdout.write(yaml.safe_dump({"checks": checks}, sort_keys=False, width=120))


if __name__ == "__main__":
    main(sys.argv[1])
