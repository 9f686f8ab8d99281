"""(being written: see console/app.py's list of page modules)"""

from __future__ import annotations


def routes(console) -> list:
    return []
