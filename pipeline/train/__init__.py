"""Training one configuration: the Trainer (exact resume), checkpoints, the sample and
reconstruction grids, and `infovae train` outside any sweep."""
