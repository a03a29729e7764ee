"""What every host adapter shares: the removal rule, groups, training rewards, host config."""
