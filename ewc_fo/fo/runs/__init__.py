"""The FiftyOne layer's label runs: the run itself, leases on a prefix, sample values, the run record."""
