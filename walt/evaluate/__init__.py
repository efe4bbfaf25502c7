"""Evaluation of generated media: FVD, FID, IS, PSNR / SSIM and long-video drift.

``python -m walt.evaluate --help`` lists the subcommands; docs/evaluate.md describes the
protocols. One file per idea: ``inputs`` (reading folders and shards), ``features`` (loading the
feature networks), ``frechet`` (Fréchet distance and IS on features), ``draws`` (mean ± std over
random draws), ``fvd``, ``image_metrics`` (FID / IS), ``reconstruction`` (PSNR / SSIM), ``drift``
and ``report`` (table and JSON).
"""
