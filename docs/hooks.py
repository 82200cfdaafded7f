"""MkDocs hook: the docstrings cross-reference with Sphinx roles (``:func:`name```), which mkdocstrings renders
as the literal role before the code; drop the role (and a leading ``~``) so the page shows just the name."""

import re

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):(<code>)~?")


def on_page_content(html, **kwargs):
    return _ROLE.sub(r"\1", html)
