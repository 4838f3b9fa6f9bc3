"""Where the repository is, for tests in any folder of ``tests/`` (they mirror the package's wings)."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
