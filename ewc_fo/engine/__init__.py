"""The EWC method only: explainers -> scores -> fusion -> prompts -> segmenter -> merge.

Arrays and tensors in, arrays out; no FiftyOne, no Ray (tests/test_architecture.py). The models it
explains live in :mod:`ewc_fo.models`, the segmenters in :mod:`ewc_fo.segmenters`.
"""
