"""minillm: the pre-training objectives of large language models, on tiny Transformers whose
forward and backward passes are written by hand in NumPy.

Start with walkthrough.md; it follows the tutorial section by section and names the function
behind every formula.
"""

__version__ = "0.1.0"
