"""Provable filter pruning (PFP, Liebenwein, Baykal et al., ICLR 2020): whole channels scored and removed.
So far: channel sensitivities (channels)."""
