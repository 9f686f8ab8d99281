"""(being written by the dataset pages' author) Image and thumbnail URLs every page uses."""

from __future__ import annotations

import urllib.parse

from edgelabels.console.kit import PREFIX


def thumbnail_url(ref: str, size: int = 256) -> str:
    return f"{PREFIX}/thumbnail?{urllib.parse.urlencode({'ref': ref, 'size': size})}"


def image_url(ref: str) -> str:
    return f"{PREFIX}/image?{urllib.parse.urlencode({'ref': ref})}"


def routes(console) -> list:
    return []
