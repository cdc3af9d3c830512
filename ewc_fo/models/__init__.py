"""What is explained: backbones, the Classifier, fitting from image-level labels, feature cache,
checkpoints (save / load / validate), and the objectness model.

Entry points: :func:`~ewc_fo.models.classifier.load_classifier`,
:func:`~ewc_fo.models.fitting.fit_classifier`. No fiftyone, no ray.
"""
