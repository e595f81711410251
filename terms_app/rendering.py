"""Markdown of the terms of use, rendered to HTML that is safe to put in a page.

Staff write the terms in the admin; the HTML that Markdown produces (raw HTML in the source
passes straight through) is cleaned with an allow-list before it reaches a browser, so a
mistake or a compromised staff account cannot inject scripts into every user's launcher.
"""

from __future__ import annotations

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

# Formatting that terms need (headings, lists, emphasis, links, tables), nothing that runs or
# loads anything: no images, forms, iframes, styles or event handlers.
ALLOWED_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "dd",
    "del",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "li",
    "ol",
    "p",
    "pre",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "ol": {"start"},
    "td": {"align", "colspan", "rowspan"},
    "th": {"align", "colspan", "rowspan", "scope"},
}
URL_SCHEMES = {"http", "https", "mailto"}


def render_terms_markdown(text: str) -> SafeString:
    """Markdown source → sanitised HTML, marked safe for templates."""
    html = markdown.markdown(text, extensions=["extra", "sane_lists"], output_format="html")
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    # Safe because nh3 has just removed everything outside the allow-lists above.
    return mark_safe(cleaned)
