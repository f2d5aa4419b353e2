"""sora-watcher's entry point: ``python watcher.py [run|once|generate] ...``."""

from sora_watcher.cli import main

if __name__ == "__main__":
    main()
