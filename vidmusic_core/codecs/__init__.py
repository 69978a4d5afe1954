"""Built-in music codecs (audio <-> tokens ``[B, K, T_a]``) and codec utilities.

- :mod:`.rvq_mel`: ``rvq_mel``, the embedded default: log-mel frames quantised by residual k-means,
  fitted on the training audio, decoded by Griffin-Lim (no downloaded weights).
- :mod:`.delay`: MusicGen's delay pattern (:func:`~.delay.apply_delays` / :func:`~.delay.undo_delays`).

Codecs are registered by :mod:`vidmusic_core.builtins` through the ``register_codecs`` hook, like any
plugin's; import a module here only when you need its class (this package imports nothing eagerly).
"""
