"""The benchmark suite of sora-watcher: ``python -m bench`` (see BENCHMARKS.md)."""
