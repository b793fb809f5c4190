"""Simulated boards for trying the controller without hardware: `python -m vending.sim --help`."""
