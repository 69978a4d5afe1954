"""Built-in weight-free and combining condition encoders, registered by ``vidmusic_core.builtins``.

- ``motion`` (:mod:`.motion`): visual rhythm (motion energy, novelty, beats, cuts, beat phase) on a token
  grid of exact times, for the ``aligned`` layout.
- ``concat`` (:mod:`.concat`): two registered encoders side by side, chosen by config.
"""
