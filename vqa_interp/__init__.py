"""vqa-interp: attribution maps of VQA models against human attention (see README.md and docs/)."""
