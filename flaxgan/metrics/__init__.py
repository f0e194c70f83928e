"""Quality metrics: FID Inception, feature statistics, FID / KID / precision-recall."""
