"""vidmusic built-in plugin `flow_dit`: a flow-matching DiT backbone over continuous latents, and the
`oobleck` latent codec (a local diffusers AutoencoderOobleck, the Stable Audio Open VAE format)."""
