"""``python -m forgetting``: the same as the ``forgetting`` command."""

from __future__ import annotations

from forgetting.cli import main

if __name__ == "__main__":
    main()
