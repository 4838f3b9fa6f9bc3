"""``pareto``: the first name of the LEMONADE-style strategy (:mod:`.lemonade`), kept so that runs
and configs that use it go on working. It is the same algorithm with the same knobs."""
from __future__ import annotations

from morphnas.search.strategies.base import register_strategy
from morphnas.search.strategies.lemonade import Lemonade, inverse_density_choice, kde_density

__all__ = ["Pareto", "inverse_density_choice", "kde_density"]


@register_strategy
class Pareto(Lemonade):
    name = "pareto"
