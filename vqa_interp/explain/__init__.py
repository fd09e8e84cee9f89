"""What the model used, beside where it looked: token attributions of the question, the image's
share of the attribution, and the faithfulness of each map (deletion/insertion), each read against
its floor (see :mod:`vqa_interp.explain.analysis`)."""
