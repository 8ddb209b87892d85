"""`poolhead cache info|clear [--cache-dir DIR]`: what the feature and token caches hold, and emptying them."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from poolhead.cache import FeatureCache, folder_size


def default_cache_dir() -> Path:
    return Path(os.environ.get("POOLHEAD_CACHE", Path.home() / ".cache" / "poolhead")).expanduser()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poolhead", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cache = sub.add_parser("cache", help="the encoder-feature and token caches (paths.cache_dir)")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                       help="default: $POOLHEAD_CACHE or ~/.cache/poolhead (the config's paths.cache_dir)")
    args = parser.parse_args(argv)

    root: Path = args.cache_dir.expanduser()
    if args.action == "clear":
        freed = folder_size(root)
        for part in ("features", "tokens"):
            shutil.rmtree(root / part, ignore_errors=True)
        print(f"cleared {root} ({freed / 2**20:.1f} MiB)")
        return 0
    features = FeatureCache(root)
    print(f"cache: {root}")
    tokens = root / "tokens"
    print(f"tokens:   {len(list(tokens.glob('*.npz')))} files, {folder_size(tokens) / 2**20:.1f} MiB")
    entries = list(features.entries())
    print(f"features: {len(entries)} entries, {folder_size(features.root) / 2**20:.1f} MiB")
    for folder, meta in entries:
        state = f"{meta['rows']} rows x {meta['hidden_size']} ({meta['dtype']})" if meta else "PARTIAL (rebuilt on use)"
        print(f"  {folder.name[:16]}  {folder_size(folder) / 2**20:8.1f} MiB  {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
