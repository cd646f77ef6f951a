"""The local runtime: moto keeps the records, the compute runs for real, all in this package."""
