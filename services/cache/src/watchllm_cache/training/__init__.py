"""Training the learned pair verifier (``make train-verifier``): seed questions written
here (``seeds.py``), pairs generated from them (``generate.py``), and the training run
(``train.py``, the only module that imports scikit-learn). The service never imports
this package: it loads the exported model (``verify/learned.py``)."""
