"""Replace the parameter table in README.md with glace_ros.relocalizer_params.markdown_table().

Usage: python scripts/update_readme_table.py  (run after changing a parameter; a test checks it)
"""
from pathlib import Path

from glace_ros.relocalizer_params import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    lines = README.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("| parameter | type | default |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    README.write_text("".join(lines[:start]) + markdown_table() + "".join(lines[end:]))


if __name__ == "__main__":
    main()
