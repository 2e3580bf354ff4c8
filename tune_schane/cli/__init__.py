"""The command line: ``tune-schane`` (:mod:`.main`: the parser), its commands (:mod:`._commands`), train's bar."""

from .main import main

__all__ = ["main"]
