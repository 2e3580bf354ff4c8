"""The command line: ``tune-schane`` (:mod:`.main`: the parser), its commands (:mod:`.commands`), train's bar."""

from .main import main

__all__ = ["main"]
