"""The FiftyOne layer's review: App config, triage views, summaries, annotation, evaluation."""
