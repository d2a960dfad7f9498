"""Puts a Markdown section into docs/PERFORMANCE.md: replaces the section that starts with the
same "## " heading (up to the next "## "), or appends it. Used by the bench scripts that own a
section after bench.sh's marker line.

Usage: python3 scripts/lib/put_section.py DOC SECTION_FILE
"""
import sys

doc, section = sys.argv[1], open(sys.argv[2]).read()
head = section.split("\n", 1)[0]
text = open(doc).read()
if head in text:
    before, rest = text.split(head, 1)
    after = rest.split("\n## ", 1)
    text = before + section + ("\n## " + after[1] if len(after) > 1 else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
open(doc, "w").write(text)
