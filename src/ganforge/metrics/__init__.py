"""Evaluation metrics: feature extractors and the scores computed on their features.

- `ganforge.metrics.scores`: FID and KID (float64, torchmetrics' formulas), precision/recall (Kynkäänniemi et al. 2019),
  density/coverage (Naeem et al. 2020) and class accuracy, all on precomputed features.
- `ganforge.metrics.inception`: the standard FID Inception-v3 (2015-12-05 weights) as a feature extractor.
- `ganforge.metrics.classifier`: the in-domain classifier used as a feature space when Inception is not used;
  `ganforge.metrics.clips`: its clip counterpart (video data); both are trained by the stage `ganforge.features`.
- `ganforge.metrics.fvd`: the Kinetics I3D for FVD.
- `ganforge.metrics.extract`: the configured extractors and the real split's (cached) features, for evaluate and
  the library alike.

Import the submodules directly; this package imports nothing heavy on its own.
"""
