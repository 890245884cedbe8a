"""Write docs/olive-compat.md: every Olive pass and config key, and what olivepress does with it.

Usage:

    python scripts/olive_compat_doc.py          # rewrite the doc
    python scripts/olive_compat_doc.py --check  # exit 1 when the doc is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from olivepress.workflow.olive_compat import render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "olive-compat.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the doc is current")
    args = parser.parse_args()
    text = render_markdown()
    if args.check:
        if DOC.read_text() != text:
            sys.exit(f"{DOC} is out of date; run python scripts/olive_compat_doc.py")
        return
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
