"""The base of what commands print as JSON/YAML: camelCase, like the API."""

from __future__ import annotations

from cotlab.api import CamelModel


class View(CamelModel):
    """A command's output record; its schema is built on first use, so a command never pays for the other
    commands' output models at start-up."""

    model_config = CamelModel.model_config | {"defer_build": True}
