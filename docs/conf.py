"""Sphinx configuration for the sprockets_http documentation."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import sprockets_http

project = "sprockets_http"
copyright = "sprockets_http contributors"
release = sprockets_http.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Only the standard library's inventory is reachable offline: the build
# must not need the network, so other projects are cited by name only.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
nitpicky = False
exclude_patterns = ["_build"]

# Diagrams (docs/diagrams/*.dot) are drawn at build time by Graphviz's dot,
# as SVG so that they scale to the width of the page.
graphviz_output_format = "svg"

REPOSITORY = "https://github.com/sprockets/sprockets_http"
html_theme = "furo"
html_title = f"sprockets_http {release}"
html_static_path = ["_static"]
html_css_files = ["diagrams.css"]
html_theme_options = {
    "source_repository": REPOSITORY,
    "source_branch": "main",
    "source_directory": "docs/",
}
html_context = {"repository": REPOSITORY}
templates_path = ["_templates"]
html_sidebars = {
    "**": [
        "sidebar/scroll-start.html",
        "sidebar/brand.html",
        "sidebar/search.html",
        "sidebar/navigation.html",
        "sidebar/project-links.html",
        "sidebar/scroll-end.html",
    ]
}
