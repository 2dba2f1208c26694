"""The LoE model layer: pure torch, no I/O."""

from .banks import bank_index, bank_neighbours
from .encoding import positional_encoding
from .grouped import grouped_linear
from .network import TiledLoE

__all__ = ["TiledLoE", "bank_index", "bank_neighbours", "grouped_linear", "positional_encoding"]
