"""`python -m spoofrl ...` = the `spoofrl` command (works where the console script is not on PATH)."""
from spoofrl.cli import entry

entry()
