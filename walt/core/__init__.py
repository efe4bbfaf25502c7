"""The Lightning-free core of W.A.L.T: latents, conditions, the sampler bridge, the SR
conditioning and checkpoint loading. ``walt.lightning`` (training), ``walt.pipelines`` and
``walt.evaluate`` build on it; nothing here imports Lightning."""
