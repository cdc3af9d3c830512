"""What every room uses: devices, time and memory budgets, image decoding, typed errors.

Imports nothing else of ewc_fo, and no fiftyone or ray.
"""
