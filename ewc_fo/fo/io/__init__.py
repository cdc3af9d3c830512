"""The FiftyOne layer's input and output: importers (create) and exporters (COCO, VOC)."""
