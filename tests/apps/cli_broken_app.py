"""A factory module with a bug: it imports a module that does not exist."""

import a_dependency_nobody_installed  # noqa: F401


def make_app() -> None:
    """Never reached."""
