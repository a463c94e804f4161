"""One small module per pre-training objective of the tutorial.

Each builds training examples from token ids (``make_batch``) and defines its loss
(``loss_and_grads``); the training loop in train.py is the same for all of them.

    clm       next-token prediction (GPT), the tutorial's section 1 and its math section
"""
