"""Datasets: the procedural toy dataset (:mod:`vidmusic_core.data.toy`) and, later, the prepared-pair
manifest, feature cache and torch ``Dataset`` over them."""
